#!/usr/bin/env bash
# terraform validate for the modules whose providers can be built here.
#
# The Terraform registry is not reachable from this build machine, so the
# hashicorp/kubernetes and hashicorp/helm providers are built from their Go
# sources (fetched through the Go module proxy) and handed to terraform with
# dev_overrides. modules/region uses only those two and is validated against
# their real schemas. modules/global and examples/two-regions need
# hashicorp/aws, whose build (2,000+ packages) does not fit here; they are
# covered by the offline HCL checks (go test ./terraform) only.
#
# Cold: ~10 min on 2 cores (kubernetes ~6 min, helm ~4 min); the binaries
# are cached in TFPROV_DIR (default ~/.cache/herald/tfprov) and reused.
# Usage: terraform/validate.sh   (or make tf-validate)
set -euo pipefail
cd "$(dirname "$0")"
command -v terraform >/dev/null || command -v tofu >/dev/null || {
  echo "tf-validate: neither terraform nor tofu on PATH (not installable here: no registry access); nothing validated" >&2
  exit 1
}
tf=$(command -v terraform || command -v tofu)
cache=${TFPROV_DIR:-$HOME/.cache/herald/tfprov}
mkdir -p "$cache/bin"

# Module proxy pseudo-versions of the providers' main branches (their tags
# are not Go-module versions); the code is the 3.x line versions.tf pins.
declare -A mods=(
  [kubernetes]=github.com/hashicorp/terraform-provider-kubernetes@v1.13.4-0.20260821094251-3a33fb6cc605
  [helm]=github.com/hashicorp/terraform-provider-helm@v1.3.3-0.20260629194918-a4f1c1d8b008
)
for name in kubernetes helm; do
  bin=$cache/bin/terraform-provider-$name
  stamp=$cache/bin/.$name.version
  if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${mods[$name]}" ]; then
    continue
  fi
  echo "tf-validate: building the $name provider from ${mods[$name]} (several minutes)" >&2
  dir=$(go mod download -json "${mods[$name]}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  src=$(mktemp -d)
  cp -r "$dir/." "$src" && chmod -R u+w "$src"
  (cd "$src" && GOFLAGS=-mod=mod nice -n 10 go build -trimpath -o "$bin" .)
  rm -rf "$src"
  echo "${mods[$name]}" >"$stamp"
done

rc=$(mktemp)
work=$(mktemp -d)
trap 'rm -rf "$rc" "$work"' EXIT
cat >"$rc" <<EOT
provider_installation {
  dev_overrides {
    "hashicorp/kubernetes" = "$cache/bin"
    "hashicorp/helm"       = "$cache/bin"
  }
  direct {}
}
EOT
# A copy: validate must not leave .terraform/ or lock files in the tree.
cp -r modules/region "$work/region"
echo "== $tf validate modules/region (providers: kubernetes, helm built from source)"
(cd "$work/region" && TF_CLI_CONFIG_FILE=$rc "$tf" validate -no-color -json) >"$work/out.json" || true
cat "$work/out.json"
grep -q '"valid": true' "$work/out.json" || { echo "tf-validate: modules/region is NOT valid" >&2; exit 1; }
echo "tf-validate: modules/region valid; modules/global and examples/two-regions need hashicorp/aws (not buildable here): HCL checks only"
