# A stand-in manager for the Let's Encrypt test: Debian's certbot and pebble (Let's Encrypt's ACME test server).
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends certbot pebble openssl \
 && rm -rf /var/lib/apt/lists/*
COPY start-pebble /usr/local/bin/start-pebble
COPY docker-shim /usr/local/bin/docker
