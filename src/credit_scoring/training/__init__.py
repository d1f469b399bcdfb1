"""The training library: candidates and search, the gate and the registry, reports,
imputation, row validation, pseudonymisation and the synthetic data generator."""
