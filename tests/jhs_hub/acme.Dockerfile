# A stand-in manager for the Let's Encrypt test: the lab's ACME image (Debian's certbot and pebble, lab/images/acme)
# with a pebble on the loopback and a docker that only logs what it is asked.
ARG BASE
FROM ${BASE}
COPY start-pebble /usr/local/bin/start-pebble
COPY docker-shim /usr/local/bin/docker
