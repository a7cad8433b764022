variable "namespace" {
  description = "Namespace for the operator."
  type        = string
  default     = "labelops-system"
}

variable "image_repository" {
  description = "Where your CI pushed the labelops image (`make image`), e.g. registry.example/labelops."
  type        = string
}

variable "image_tag" {
  description = "Tag of that image."
  type        = string
}

variable "kafka_bootstrap" {
  description = "Bootstrap servers of your Kafka, e.g. kafka-0.kafka.data:9092."
  type        = string
}

variable "postgres_dsn" {
  description = "Admin DSN of your PostgreSQL, e.g. postgresql://labelops_admin:...@pg.data:5432/labeling."
  type        = string
  sensitive   = true
}

variable "prometheus_operator" {
  description = "The cluster runs the Prometheus Operator: install the ServiceMonitor and alert rules."
  type        = bool
  default     = false
}
