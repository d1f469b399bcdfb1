#!/usr/bin/env bash
# Roll one overlay out with the images deploy.yml built, smoke test it, roll back on failure.
#   deploy/rollout.sh <overlay> <namespace>
# Environment: KUBECONFIG_DATA (the kubeconfig, from a secret; written to a private file and
# never printed), SERVICE_IMAGE, PIPELINE_IMAGE and PIPELINE_SPARK_IMAGE (references by digest).
set -euo pipefail
overlay="$1"
namespace="$2"
: "${KUBECONFIG_DATA:?the KUBECONFIG secret is empty}" "${SERVICE_IMAGE:?}" "${PIPELINE_IMAGE:?}" \
  "${PIPELINE_SPARK_IMAGE:?}"
for tool in kubectl kustomize uv; do  # all three are on GitHub's ubuntu runners
  command -v "${tool}" >/dev/null || { echo "::error::${tool} is needed"; exit 1; }
done

umask 077
export KUBECONFIG="${RUNNER_TEMP:-$(mktemp -d)}/kubeconfig"
printf '%s' "${KUBECONFIG_DATA}" > "${KUBECONFIG}"
root="$(pwd)"
deployments=(credit-scoring-service credit-scoring-trigger credit-scoring-mlflow)

# The CronJobs' containers (cronjob:container), whose images are put back on a rollback
cronjobs=(credit-scoring-drift:monitoring credit-scoring-batch-scoring:batch-scoring
  credit-scoring-spark-processing:driver)

# What runs now, to go back to (nothing on a first deploy)
declare -A previous=()
for pair in "${cronjobs[@]}"; do
  previous["${pair}"]="$(kubectl -n "${namespace}" get cronjob "${pair%%:*}" \
    -o jsonpath="{.spec.jobTemplate.spec.template.spec.containers[?(@.name==\"${pair#*:}\")].image}" \
    2>/dev/null || true)"
done

rollback() {
  echo "::error::${overlay}: rollout or smoke test failed; rolling back"
  for deployment in "${deployments[@]}"; do
    kubectl -n "${namespace}" rollout undo "deployment/${deployment}" || true
  done
  for pair in "${cronjobs[@]}"; do
    image="${previous[${pair}]}"
    [ -n "${image}" ] || continue
    kubectl -n "${namespace}" set image "cronjob/${pair%%:*}" "${pair#*:}=${image}" || true
  done
  # the Spark executors run the driver's image (spark-processing.yaml)
  image="${previous[credit-scoring-spark-processing:driver]}"
  if [ -n "${image}" ]; then
    kubectl -n "${namespace}" set env cronjob/credit-scoring-spark-processing -c driver \
      "SPARK_EXECUTOR_IMAGE=${image}" || true
  fi
  for deployment in "${deployments[@]}"; do
    kubectl -n "${namespace}" rollout status "deployment/${deployment}" --timeout=10m || true
  done
  exit 1
}

cd "deploy/k8s/overlays/${overlay}"
kustomize edit set image "credit-scoring-service=${SERVICE_IMAGE}" "credit-scoring-pipeline=${PIPELINE_IMAGE}" \
  "credit-scoring-pipeline-spark=${PIPELINE_SPARK_IMAGE}"
kubectl apply -k . || rollback
for deployment in "${deployments[@]}"; do
  kubectl -n "${namespace}" rollout status "deployment/${deployment}" --timeout=10m || rollback
done

cd "${root}"
kubectl -n "${namespace}" port-forward svc/credit-scoring-service 18080:80 >/dev/null 2>&1 &
forward=$!
trap 'kill "${forward}" 2>/dev/null || true' EXIT
uv run credit-scoring smoke --url http://127.0.0.1:18080 --wait 120 || rollback
echo "${overlay}: ${SERVICE_IMAGE} serving in ${namespace}"
