variable "namespace" {
  description = "Namespace of the operator and of its connection Secrets."
  type        = string
  default     = "labelops-system"
}

variable "create_namespace" {
  description = "Create the namespace; false when it exists already (then it is left alone on destroy)."
  type        = bool
  default     = true
}

variable "release_name" {
  description = "Helm release name; it prefixes the operator's Deployment, ServiceAccount and ClusterRole."
  type        = string
  default     = "labelops"
}

variable "chart" {
  description = "Chart to install: a local path (default: this repository's chart) or a chart name in chart_repository."
  type        = string
  default     = null
}

variable "chart_repository" {
  description = "Repository of the chart, e.g. oci://registry.example/charts; null for a local path."
  type        = string
  default     = null
}

variable "chart_version" {
  description = "Chart version to install from chart_repository; null for the newest or a local path."
  type        = string
  default     = null
}

variable "image_repository" {
  description = "Image of the operator and, by default, of the campaign workers."
  type        = string
  default     = "labelops"
}

variable "image_tag" {
  description = "Image tag; null for the chart's appVersion."
  type        = string
  default     = null
}

variable "kafka_bootstrap" {
  description = "Kafka bootstrap servers as the operator reaches them, e.g. kafka-0.kafka:9092,kafka-1.kafka:9092."
  type        = string

  validation {
    condition     = can(regex("^[^,:\\s]+:[0-9]+(,[^,:\\s]+:[0-9]+)*$", var.kafka_bootstrap))
    error_message = "kafka_bootstrap must be a comma-separated list of host:port, e.g. kafka-0.kafka:9092."
  }
}

variable "postgres_dsn" {
  description = "Admin DSN of PostgreSQL: the operator creates a schema and a role per campaign."
  type        = string
  sensitive   = true

  validation {
    condition     = can(regex("^postgres(ql)?://", var.postgres_dsn))
    error_message = "postgres_dsn must be a URL starting with postgresql:// (or postgres://)."
  }
}

variable "worker_kafka_bootstrap" {
  description = "Kafka bootstrap servers as worker pods reach them, when different from kafka_bootstrap."
  type        = string
  default     = null
}

variable "worker_postgres_host" {
  description = "PostgreSQL host as worker pods reach it, when different from the DSN's host."
  type        = string
  default     = null
}

variable "values" {
  description = "Further chart values (see charts/labelops/values.yaml), merged over the module's own."
  type        = any
  default     = {}
}

variable "wait" {
  description = "Wait until the operator's Deployment is available before the apply finishes."
  type        = bool
  default     = true
}
