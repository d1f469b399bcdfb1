#!/bin/bash
# A Spark executor on Kubernetes, in the Spark variant of the pipeline image.
#
# The driver (`kedro run --env spark` in the Job's pod, Spark's client mode) creates each
# executor pod from deploy/k8s/base/spark-executor-pod.yaml, appends the argument `executor`
# and passes the executor's settings in the environment (SPARK_DRIVER_URL, SPARK_EXECUTOR_ID,
# ... and SPARK_JAVA_OPT_<n>, the JVM options). This starts Spark's executor backend with them,
# on the jars PySpark carries ($SPARK_HOME/jars).
set -euo pipefail
if [ "${1:-}" = executor ]; then
  shift
fi
for name in SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES SPARK_EXECUTOR_MEMORY \
    SPARK_APPLICATION_ID SPARK_EXECUTOR_POD_IP SPARK_EXECUTOR_POD_NAME; do
  if [ -z "${!name:-}" ]; then
    echo "spark-executor: ${name} is not set: this pod is started by a Spark driver" \
      "(spark.master k8s://...), not by hand" >&2
    exit 2
  fi
done
: "${SPARK_HOME:?SPARK_HOME is not set (the image sets it to the pyspark package folder)}"

java_options=()
# SPARK_JAVA_OPT_0, _1, ... in their numeric order
while IFS= read -r option; do
  java_options+=("${option}")
done < <(env | sed -n 's/^SPARK_JAVA_OPT_\([0-9]*\)=\(.*\)$/\1 \2/p' | sort -n | cut -d' ' -f2-)

exec java "${java_options[@]}" \
  -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
  -cp "${SPARK_CLASSPATH:+${SPARK_CLASSPATH}:}${SPARK_HOME}/jars/*" \
  org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
  --driver-url "${SPARK_DRIVER_URL}" \
  --executor-id "${SPARK_EXECUTOR_ID}" \
  --cores "${SPARK_EXECUTOR_CORES}" \
  --app-id "${SPARK_APPLICATION_ID}" \
  --hostname "${SPARK_EXECUTOR_POD_IP}" \
  --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
  --podName "${SPARK_EXECUTOR_POD_NAME}" \
  "$@"
