output "namespace" {
  description = "Namespace the operator runs in."
  value       = helm_release.labelops.namespace
}

output "release_name" {
  description = "Helm release of the operator."
  value       = helm_release.labelops.name
}

output "connection_secrets" {
  description = "Secrets the operator reads its Kafka and PostgreSQL settings from."
  value = {
    kafka    = kubernetes_secret_v1.kafka.metadata[0].name
    postgres = kubernetes_secret_v1.postgres.metadata[0].name
  }
}
