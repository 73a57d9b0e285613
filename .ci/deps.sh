#!/usr/bin/env bash
# Installs what Herald's tests need on a fresh Debian machine: redis-server
# (tests start their own instances on free loopback ports), curl (the
# protection tests' outside-the-process sampler), for the real-browser
# test, chromium + chromium-driver, for the log shipper test syslog-ng
# with its http module, and node and npm for the JS client, whose test
# dependencies (playwright-core, driving Debian's chromium) npm ci installs
# from push/client/js/package-lock.json. Needs root for apt; without root
# it only reports what is missing.
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
command -v node >/dev/null 2>&1 || need+=(nodejs) # JS client tests (Node >= 20)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The log shipper test runs Debian's syslog-ng with its http() destination
# (a module of its own) and logger (bsdutils, essential).
command -v syslog-ng >/dev/null 2>&1 || need+=(syslog-ng-core)
ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1 || need+=(syslog-ng-mod-http)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]}; run as root or install them with apt" >&2
  else
    echo "deps: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
# The JS client's test dependencies, exactly as locked (no browser
# download: the tests drive /usr/bin/chromium).
js="$(cd "$(dirname "$0")/.." && pwd)/push/client/js"
if command -v npm >/dev/null 2>&1; then
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
else
  echo "deps: npm missing: the JS client tests (push/client/js) cannot run" >&2
fi
