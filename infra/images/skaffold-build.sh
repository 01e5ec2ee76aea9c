#!/usr/bin/env bash
# skaffold's build step for the local node (skaffold.yaml, profile `local`): build one image
# with buildah from infra/images/Dockerfile, on the local base image, and import it into the
# running node's containerd (`muster cluster import`), where pods find it with
# imagePullPolicy Never. Nothing is pushed anywhere.
#
#   infra/images/skaffold-build.sh COMPONENT     a row of infra/images/services.tsv, or
#                                                temporal (the Dockerfile's dev server target)
#
# skaffold runs it from the repository root with IMAGE (the name and tag to build) and
# PUSH_IMAGE (false) set. Its local builder then reads the image's ID through the Docker
# API, which the node serves over buildah's storage (DOCKER_HOST, docs/development.md), and
# deploys the image as <name>:<ID>; so the image enters the node under that name too.
# The local profile tags by input digest: an image of that name, built on the same base,
# was built from the same files, and is imported again instead of built again. So is one
# named by the build context's content tag (`muster cluster context-tag`), which every build
# also gets, as the chart tests' builds do.
#
# MUSTER_CONTAINERS_ROOT (buildah's storage, default .cache/containers), MUSTER_IMAGE_BASE
# (default localhost/muster-base:bookworm, `make image-base`) and MUSTER (the muster
# command, default .venv/bin/muster) change where it looks.
set -euo pipefail

die() {
  echo "skaffold-build.sh: $*" >&2
  exit 1
}

component=${1:?usage: infra/images/skaffold-build.sh COMPONENT (a row of infra/images/services.tsv, or temporal)}
[[ -n ${IMAGE:-} ]] || die "IMAGE is not set: skaffold runs this script (skaffold build -p local)"
[[ ${PUSH_IMAGE:-false} == false ]] ||
  die "the local profile builds for the local node and pushes nowhere; keep build.local.push false"
cd "${BUILD_CONTEXT:-.}"

table=infra/images/services.tsv
if [[ $component == temporal ]]; then
  # The chart's Temporal dev server (temporal.devServer): the Dockerfile's `temporal` target.
  what="the Temporal dev server"
  args=(--target temporal)
else
  read -r _ package module ports < <(awk -v c="$component" '!/^#/ && $1 == c' "$table") ||
    die "no component '$component' in $table, and it is not 'temporal'" \
      "(components: $(awk '!/^#/ && NF { printf "%s ", $1 }' "$table"))"
  what="$package (python -m $module)"
  args=(--build-arg "PACKAGE=$package" --build-arg "MODULE=$module" --build-arg "PORTS=$ports")
fi

root=${MUSTER_CONTAINERS_ROOT:-$PWD/.cache/containers}
base=${MUSTER_IMAGE_BASE:-localhost/muster-base:bookworm}
muster=${MUSTER:-$PWD/.venv/bin/muster}
ca_bundle=/etc/ssl/certs/ca-certificates.crt
command -v buildah >/dev/null || die "buildah not found: run 'make image-tools'"
[[ -x $muster ]] || die "$muster not found: run 'make venv' (or set MUSTER)"
buildah=(buildah --root "$root" --storage-driver vfs)

image_id() { "${buildah[@]}" inspect --type image --format '{{.FromImageID}}' "$1" 2>/dev/null; }
label() {
  "${buildah[@]}" inspect --type image \
    --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null || true
}

base_id=$(image_id "$base") || die "$base is missing from $root: run 'make image-base'"
# The same files make the same image, whatever tag skaffold chose (a profile switch, the
# input digest after a revert, the chart tests' builds): the content tag finds it.
context=$("$muster" cluster context-tag .) || die "no content tag for the build context $PWD"
same_files=${IMAGE%:*}:$context

if [[ $(label "$IMAGE" io.muster.base-image) == "$base_id" ]]; then
  echo "$IMAGE: built before from the same inputs on the same base; importing it again"
elif [[ $(label "$same_files" io.muster.base-image) == "$base_id" ]]; then
  echo "$IMAGE: $same_files was built from the same files on the same base; importing it"
  "${buildah[@]}" tag "$same_files" "$IMAGE"
else
  echo "$IMAGE: building $what with buildah"
  # No --layers: with vfs storage every cached layer is a full copy of the root filesystem.
  "${buildah[@]}" build --isolation chroot --quiet \
    --volume "$ca_bundle:$ca_bundle:ro" \
    --build-arg "BASE_IMAGE=$base" "${args[@]}" \
    --label "io.muster.base-image=$base_id" \
    -f infra/images/Dockerfile -t "$IMAGE" -t "$same_files" . >/dev/null
fi

id=$(image_id "$IMAGE") || die "buildah built no image $IMAGE"
"$muster" cluster import --containers-root "$root" "$IMAGE" --tag "${IMAGE%:*}:${id#sha256:}"
