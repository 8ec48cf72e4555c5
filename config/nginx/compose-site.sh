#!/bin/sh
# docker-compose.yml's nginx runs this from /docker-entrypoint.d/ before nginx starts: the
# site is piw.conf as it is, but for the web service's address ($PIW_WEB_UPSTREAM, web:8080
# there: each web container the name resolves to at nginx's start). The tree is mounted at
# piw.conf's /srv/piw/www and the logs at /var/log/nginx, which piw-logger reads.
set -eu
src=${PIW_NGINX_CONF:-/etc/piw/nginx/piw.conf}
site=${PIW_NGINX_SITE:-/etc/nginx/conf.d/default.conf}
grep -q '^    server 127\.0\.0\.1:8080;$' "$src" || {
    echo "$0: no 'server 127.0.0.1:8080;' in $src" >&2
    exit 1
}
sed -e "s|^    server 127\.0\.0\.1:8080;\$|    server ${PIW_WEB_UPSTREAM:-web:8080};|" "$src" >"$site"
