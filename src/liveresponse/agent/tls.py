"""TLS for the agent: trust exactly the CA pinned at enrollment (SPEC §11)."""

from __future__ import annotations

import hashlib
import socket
import ssl
from urllib.parse import urlparse

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from liveresponse.protocol.errors import AuthError


def pinned_context(ca_pem_path: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_pem_path)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def fetch_and_check_ca(server_url: str, expected_sha256: str, timeout_s: float = 10.0) -> bytes:
    """Fetch the server's CA certificate and accept it only if its fingerprint is the token's.

    The first connection cannot verify the server yet, so nothing it says is
    trusted until the fingerprint matches; every later connection verifies the
    server certificate against this CA.
    """
    parsed = urlparse(server_url)
    if parsed.scheme != "https" or not parsed.hostname:
        raise AuthError(f"server URL must be https://HOST:PORT, not {server_url!r}")
    port = parsed.port or 443
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = f"GET /api/v1/enroll/ca HTTP/1.1\r\nHost: {parsed.hostname}\r\nConnection: close\r\n\r\n".encode()
    try:
        with (
            socket.create_connection((parsed.hostname, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=parsed.hostname) as tls,
        ):
            tls.sendall(request)
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
                if sum(map(len, chunks)) > 1_000_000:
                    break
    except OSError as exc:
        raise AuthError(f"cannot reach {server_url}: {exc}") from None
    response = b"".join(chunks)
    _head, _, body = response.partition(b"\r\n\r\n")
    try:
        cert = x509.load_pem_x509_certificate(body.strip())
    except ValueError:
        raise AuthError(f"{server_url} did not send a CA certificate") from None
    actual = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    if actual != expected_sha256:
        raise AuthError(
            f"the server's CA fingerprint {actual} is not the one in the enrollment token ({expected_sha256}): "
            "refusing to trust it"
        )
    return cert.public_bytes(serialization.Encoding.PEM)
