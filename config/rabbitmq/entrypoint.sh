#!/bin/sh
# Entry point of docker-compose.yml's rabbitmq: renders definitions.json (each
# ${PIW_..._PASSWORD} replaced by that environment variable) where rabbitmq.conf's
# load_definitions reads it, then runs its arguments (the image's own entrypoint).
# Passwords are limited to letters, digits and -._~ so that they go into JSON and into
# AMQP URIs unescaped.
set -eu
template=${PIW_DEFINITIONS_TEMPLATE:-/etc/piw-rabbitmq/definitions.json}
out=${PIW_DEFINITIONS:-/etc/rabbitmq/piw-definitions.json}
script=
for var in $(grep -o '\${PIW_[A-Z_]*}' "$template" | tr -d '${}' | sort -u); do
    eval "value=\${$var:-}"
    case $value in
        "" | *[!A-Za-z0-9._~-]*)
            echo "rabbitmq: $var must be set, to letters, digits and -._~ only" >&2
            exit 1 ;;
        change-me*)
            echo "rabbitmq: WARNING: $var is still the placeholder $value" >&2 ;;
    esac
    script="$script s|\\\${$var}|$value|g;"
done
umask 077
sed -e "$script" "$template" >"$out.tmp"
if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
    chown rabbitmq:rabbitmq "$out.tmp"
fi
mv "$out.tmp" "$out"
# The TLS files (rabbitmq.conf's ssl_options), from the tls volume that piw-broker-cert wrote
# as the image's user piw: the key readable by the rabbitmq user only. A renewed certificate
# takes effect at the next restart.
tls_from=${PIW_TLS_FROM:-/etc/piw-tls}
tls_to=${PIW_TLS_TO:-/etc/rabbitmq/tls}
if [ -f "$tls_from/broker.key" ]; then
    mkdir -p "$tls_to"
    for name in ca.crt broker.crt broker.key; do
        cp "$tls_from/$name" "$tls_to/$name.tmp"
        if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
            chown rabbitmq:rabbitmq "$tls_to/$name.tmp"
        fi
        mv "$tls_to/$name.tmp" "$tls_to/$name"
    done
else
    echo "rabbitmq: WARNING: no $tls_from/broker.key: the TLS listener (5671) cannot start" >&2
fi
exec "$@"
