"""``piw-broker-cert``: make the CA and the broker's TLS certificate for a deployment.

Builders on volunteers' home networks reach the broker over the internet, so they connect with
``amqps://`` (port 5671) and verify the broker's certificate against a CA file of their own
(``CA_FILE`` in builder.yaml). This makes that CA once (``ca.crt``, ``ca.key``: keep the key
off any public host) and signs a certificate for the broker's names (``broker.crt``,
``broker.key``) with it, by running ``openssl`` (Debian's package; no Python dependency).
The CA is kept when it exists, so the command also renews the broker's certificate
(``--renew``) without touching the builders; ``--new-ca`` starts again from a new CA
(docs/security.md, rotating secrets). It prints what RabbitMQ's config needs.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from builders.commandline import command_parser, configure_logging

#: Days a CA lasts: it is on every builder, so replacing it is the expensive rotation.
CA_DAYS = 3650
#: Days a broker certificate lasts (825: the most that Apple's and browsers' rules allow; a
#: renewal touches only the broker).
CERT_DAYS = 825


class CertError(Exception):
    """openssl failed or a name is unusable; the text says which."""


def subject_alt_names(names: list[str]) -> str:
    """``DNS:host,IP:192.0.2.1``: an address is an IP entry (a builder connecting by address
    checks it against IP entries only), anything else a DNS name."""
    entries = []
    for name in names:
        if not name or any(c in name for c in ",/= \n"):
            raise CertError(f"not a host name or address: {name!r}")
        try:
            entries.append(f"IP:{ipaddress.ip_address(name)}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        raise CertError("openssl is not installed (apt-get install openssl)")
    run = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise CertError(f"openssl {args[0]} failed: {last}")


def make_ca(directory: Path, label: str, days: int = CA_DAYS) -> None:
    """A self-signed CA that may sign certificates and nothing else is a CA for."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(directory / "ca.key"), "-out", str(directory / "ca.crt"),
             "-days", str(days), "-subj", f"/CN=piw broker CA {label}",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")


def make_broker_cert(directory: Path, names: list[str], days: int = CERT_DAYS) -> None:
    """A server certificate for *names*, signed by the CA in *directory*."""
    san = subject_alt_names(names)
    with tempfile.TemporaryDirectory(prefix="piw-cert-") as tmp:
        csr, ext = Path(tmp) / "broker.csr", Path(tmp) / "ext.cnf"
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
        key = directory / "broker.key.new"
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={names[0]}")
        crt = directory / "broker.crt.new"
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.crt"),
                 "-CAkey", str(directory / "ca.key"), "-CAcreateserial",
                 "-out", str(crt), "-days", str(days), "-extfile", str(ext))
    # the key first, then the certificate: a broker restarted in between gets a pair that
    # does not match and says so, never a certificate for a key that is gone
    os.replace(key, directory / "broker.key")
    os.replace(crt, directory / "broker.crt")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("piw-broker-cert", __doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path,
                        help="where the CA and the certificate are (made if missing)")
    parser.add_argument("--name", action="append", required=True, dest="names",
                        help="a host name or address builders use for the broker "
                             "(repeat for each; the first is the certificate's subject)")
    parser.add_argument("--renew", action="store_true",
                        help="a new broker certificate even if one exists (same CA)")
    parser.add_argument("--new-ca", action="store_true",
                        help="a new CA too (every builder then needs the new ca.crt)")
    parser.add_argument("--days", type=int, default=CERT_DAYS,
                        help=f"days the broker certificate lasts (default {CERT_DAYS})")
    args = parser.parse_args(argv)
    configure_logging(args, default=logging.WARNING)
    directory: Path = args.dir
    umask = os.umask(0o077)  # the keys: nobody else's to read
    try:
        subject_alt_names(args.names)  # every name checked before anything is made
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        have_ca = (directory / "ca.crt").exists() and (directory / "ca.key").exists()
        made = []
        if args.new_ca or not have_ca:
            make_ca(directory, args.names[0])
            made.append("ca.crt")
        if made or args.renew or not (directory / "broker.crt").exists():
            make_broker_cert(directory, args.names, args.days)
            made.append("broker.crt")
        for public in ("ca.crt", "broker.crt"):
            os.chmod(directory / public, 0o644)
    except (CertError, OSError) as exc:
        print(f"piw-broker-cert: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)  # main() is called in-process too (tests): leave the process as it was
    print(f"{', '.join(made) or 'nothing'} made in {directory} "
          f"(for {', '.join(args.names)}). RabbitMQ (rabbitmq.conf), the key readable by "
          "its user:")
    print("listeners.ssl.default = 5671")
    for option, name in (("cacertfile", "ca.crt"), ("certfile", "broker.crt"),
                         ("keyfile", "broker.key")):
        print(f"ssl_options.{option} = {directory.resolve() / name}")
    print(f"Builders: copy {directory.resolve() / 'ca.crt'} to each and set CA_FILE to it, "
          f"with AMQP_URI amqps://<user>:<password>@{args.names[0]}:5671/<vhost>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
