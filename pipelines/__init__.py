"""Pipeline presets, one TOML file per dataset (installed as `musicnext_tf.pipelines`)."""
