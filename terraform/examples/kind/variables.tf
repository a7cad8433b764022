variable "image_tag" {
  description = "Tag of the image `make image` built and `kind load` loaded."
  type        = string
  default     = "0.1.0"
}

variable "postgres_password" {
  description = "Password of the throwaway PostgreSQL's admin role."
  type        = string
  sensitive   = true
  default     = "labelops-kind-only"
}

variable "kafka_image" {
  description = "Kafka image (KRaft, single node)."
  type        = string
  default     = "apache/kafka:4.1.0"
}

variable "postgres_image" {
  description = "PostgreSQL image."
  type        = string
  default     = "postgres:18"
}
