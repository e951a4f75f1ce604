"""What ``analyze`` runs on the device (SPEC §5): three engines over one opened file.

    target.py      open the file (or a process's image through /proc/PID/exe) without following a
                   swapped-in link, blocking on a FIFO or letting anything execute it
    intel.py       the tenant's intel bundle: fetched by sha256 only when not cached, compiled once
    engines.py     hash (sha256 against the tenant's indicators), yara (tenant rule sets), heuristics;
                   the verdict and the result object
    yara_rules.py  compiling the bundle's rule sets and scanning one file with them
    heuristics.py  the built-in checks: EICAR, setuid, world-writable and hidden locations, deleted images

The verdict is ``malicious`` when any finding is, else ``suspicious`` when any
finding is, else ``clean``. A finding is ``{engine, result, reason, rule}``.
"""
