"""The server's own CA, TLS certificate and command-signing key (SPEC §3, §11).

Layout under the data directory::

    tls/ca.pem, tls/ca.key        the CA (10 years); its sha256 fingerprint goes into enrollment tokens
    tls/server.pem, tls/server.key  the server certificate, signed by the CA, for the listen and public names
    keys/command.key              Ed25519 key that signs every command envelope

Keys are written 0600 in 0700 directories.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey | Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ca_fingerprint(ca_pem: bytes) -> str:
    """sha256 of the CA certificate's DER form, hex."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class Pki:
    def __init__(self, data_dir: Path) -> None:
        self.tls_dir = data_dir / "tls"
        self.ca_pem = self.tls_dir / "ca.pem"
        self.ca_key = self.tls_dir / "ca.key"
        self.server_pem = self.tls_dir / "server.pem"
        self.server_key = self.tls_dir / "server.key"
        self.command_key_path = data_dir / "keys" / "command.key"

    def ensure(self, hostnames: list[str]) -> None:
        """Create what is missing; a server certificate lacking one of ``hostnames`` is re-issued."""
        self.tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.ca_pem.exists():
            self._make_ca()
        if not self.server_pem.exists() or not self._covers(hostnames):
            self._make_server_cert(hostnames)
        if not self.command_key_path.exists():
            _write_private(self.command_key_path, _pem_key(Ed25519PrivateKey.generate()))

    def command_key(self) -> Ed25519PrivateKey:
        key = serialization.load_pem_private_key(self.command_key_path.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        return key

    def command_public_key_pem(self) -> str:
        return (
            self.command_key()
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def fingerprint(self) -> str:
        return ca_fingerprint(self.ca_pem.read_bytes())

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"liveresponse CA {socket.gethostname()}")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.ca_key, _pem_key(key))
        self.ca_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _covers(self, hostnames: list[str]) -> bool:
        cert = x509.load_pem_x509_certificate(self.server_pem.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        present = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        present |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        return all(h in present for h in hostnames)

    def _make_server_cert(self, hostnames: list[str]) -> None:
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca_pem.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(["localhost", "127.0.0.1", "::1", socket.gethostname(), *hostnames]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "liveresponse server")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(self.server_key, _pem_key(key))
        self.server_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
