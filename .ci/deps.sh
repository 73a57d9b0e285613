#!/usr/bin/env bash
# Installs what Herald's tests need on a fresh Debian machine: redis-server
# (tests start their own instances on free loopback ports), curl (the
# protection tests' outside-the-process sampler), for the real-browser
# test, chromium + chromium-driver, and for the log shipper test syslog-ng
# with its http module. Needs root for apt; without
# root it only reports what is missing.
#
# promtool (deploy/prometheus_rules_test.go) is taken out of Debian's
# prometheus package without installing it (no Prometheus service) and put in
# $(go env GOPATH)/bin, where that test also looks. apt-get download needs no
# root, only package lists (refreshed first when root and they are empty).
set -euo pipefail
gobin="$(${GO:-go} env GOPATH)"
gobin="${gobin%%:*}/bin"
if ! command -v promtool >/dev/null 2>&1 && [ ! -x "$gobin/promtool" ]; then
  echo "deps: fetching promtool from Debian's prometheus package into $gobin" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  [ "$(id -u)" != 0 ] || chown _apt "$tmp" 2>/dev/null || true # apt's download sandbox
  dl() { (cd "$tmp" && apt-get download -qq prometheus) >/dev/null 2>&1; }
  if dl || { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null && dl; }; then
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
    install -D -m 0755 "$tmp/usr/bin/promtool" "$gobin/promtool"
  else
    echo "deps: could not download Debian's prometheus package for promtool (empty apt lists? run as root, or put promtool on PATH)" >&2
  fi
fi
need=()
command -v curl >/dev/null 2>&1 || need+=(curl) # cmd/herald's protection tests sample from outside the process
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
# The log shipper test runs Debian's syslog-ng with its http() destination
# (a module of its own) and logger (bsdutils, essential).
command -v syslog-ng >/dev/null 2>&1 || need+=(syslog-ng-core)
ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1 || need+=(syslog-ng-mod-http)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing ${need[*]}; run as root or install them with apt" >&2
  exit 0
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
