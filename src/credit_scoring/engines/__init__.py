"""The engines a pipeline can run on besides pandas: Spark (``kedro run --env spark``)."""
