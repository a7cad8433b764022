#!/usr/bin/env bash
# Pin the Kubernetes tools module (stack/k8s-tools/kubernetes) to one k8s.io/kubernetes release.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0
# and points them at ./staging/src in its own replace block, which does not apply to a module
# that merely requires it. So this module must replace each of them with the published
# v0.<minor>.<patch> of the same release. The list is read from the release's own go.mod, so a
# bump is one command:
#
#   stack/k8s-tools/gen-replaces.sh v1.37.2
#
# go.mod is rewritten from scratch (header comment, module, tools), so a downgrade does not
# keep the newer release's dependency versions.
set -euo pipefail

version=${1:?usage: gen-replaces.sh v1.N.P}
[[ $version =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { echo "not a release version: $version" >&2; exit 2; }
staging_version="v0.${version#v1.}"

cd "$(dirname "$0")/kubernetes"

# The release's go.mod, straight from the module proxy (no full source download needed).
release_gomod=$(go mod download -json "k8s.io/kubernetes@${version}" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f $release_gomod ]] || { echo "could not fetch go.mod of k8s.io/kubernetes@${version}" >&2; exit 1; }

# Staging modules are exactly those the release replaces with a ./staging/src path.
mapfile -t staging < <(go mod edit -json "$release_gomod" | tr -d ' \t\n' \
  | grep -o '"Old":{"Path":"k8s.io/[^"]*"},"New":{"Path":"./staging/src/' \
  | sed 's/"Old":{"Path":"\([^"]*\)".*/\1/')
[[ ${#staging[@]} -gt 0 ]] || { echo "no staging replaces found in $release_gomod" >&2; exit 1; }
release_go=$(go mod edit -json "$release_gomod" | tr -d ' \t\n' | sed -n 's/.*"Go":"\([^"]*\)".*/\1/p')

module=$(go mod edit -json | tr -d ' \t\n' | sed -n 's/.*"Module":{"Path":"\([^"]*\)".*/\1/p')
mapfile -t tools < <(go mod edit -json | tr -d ' \t\n' | grep -o '"Tool":\[[^]]*\]' \
  | grep -o '"Path":"[^"]*"' | sed 's/"Path":"\([^"]*\)"/\1/')
[[ ${#tools[@]} -gt 0 ]] || { echo "go.mod lists no tool directives to keep" >&2; exit 1; }

{
  sed -n '/^\/\//p;/^[^\/]/q' go.mod  # the leading comment block
  printf 'module %s\n\ngo %s\n' "$module" "$release_go"
} > go.mod.new
mv go.mod.new go.mod
rm -f go.sum

args=(-require="k8s.io/kubernetes@${version}")
for mod in "${staging[@]}"; do
  args+=(-replace="${mod}=${mod}@${staging_version}")
done
for tool in "${tools[@]}"; do
  args+=(-tool="$tool")
done
go mod edit "${args[@]}"
go mod tidy
echo "k8s.io/kubernetes ${version}: replaced ${#staging[@]} staging modules with ${staging_version}"
