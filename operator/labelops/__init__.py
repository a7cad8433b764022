"""labelops: a Kubernetes operator for human-labeling campaigns."""
