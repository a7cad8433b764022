# Throwaway single-node Kafka and PostgreSQL for a laptop: no persistence, no replication.
locals {
  data_namespace  = kubernetes_namespace_v1.data.metadata[0].name
  kafka_host      = "kafka.${local.data_namespace}.svc.cluster.local"
  kafka_bootstrap = "${local.kafka_host}:9092"
  postgres_dsn    = "postgresql://postgres:${var.postgres_password}@postgres.${local.data_namespace}.svc.cluster.local:5432/postgres"
}

resource "kubernetes_namespace_v1" "data" {
  metadata {
    name = "labelops-data"
  }
}

resource "kubernetes_deployment_v1" "kafka" {
  metadata {
    name      = "kafka"
    namespace = local.data_namespace
  }
  spec {
    replicas = 1
    selector {
      match_labels = { app = "kafka" }
    }
    template {
      metadata {
        labels = { app = "kafka" }
      }
      spec {
        container {
          name  = "kafka"
          image = var.kafka_image
          # One KRaft node that is both controller and broker, advertised by its Service name.
          env {
            name  = "KAFKA_NODE_ID"
            value = "1"
          }
          env {
            name  = "KAFKA_PROCESS_ROLES"
            value = "broker,controller"
          }
          env {
            name  = "KAFKA_LISTENERS"
            value = "PLAINTEXT://:9092,CONTROLLER://:9093"
          }
          env {
            name  = "KAFKA_ADVERTISED_LISTENERS"
            value = "PLAINTEXT://${local.kafka_bootstrap}"
          }
          env {
            name  = "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
            value = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
          }
          env {
            name  = "KAFKA_CONTROLLER_LISTENER_NAMES"
            value = "CONTROLLER"
          }
          env {
            name  = "KAFKA_CONTROLLER_QUORUM_VOTERS"
            value = "1@localhost:9093"
          }
          env {
            name  = "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"
            value = "1"
          }
          env {
            name  = "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"
            value = "1"
          }
          env {
            name  = "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"
            value = "1"
          }
          port {
            container_port = 9092
          }
          readiness_probe {
            tcp_socket {
              port = 9092
            }
          }
        }
      }
    }
  }
}

resource "kubernetes_service_v1" "kafka" {
  metadata {
    name      = "kafka"
    namespace = local.data_namespace
  }
  spec {
    selector = { app = "kafka" }
    port {
      port = 9092
    }
  }
}

resource "kubernetes_deployment_v1" "postgres" {
  metadata {
    name      = "postgres"
    namespace = local.data_namespace
  }
  spec {
    replicas = 1
    selector {
      match_labels = { app = "postgres" }
    }
    template {
      metadata {
        labels = { app = "postgres" }
      }
      spec {
        container {
          name  = "postgres"
          image = var.postgres_image
          env {
            name  = "POSTGRES_PASSWORD"
            value = var.postgres_password
          }
          port {
            container_port = 5432
          }
          readiness_probe {
            exec {
              command = ["pg_isready", "-U", "postgres"]
            }
          }
        }
      }
    }
  }
}

resource "kubernetes_service_v1" "postgres" {
  metadata {
    name      = "postgres"
    namespace = local.data_namespace
  }
  spec {
    selector = { app = "postgres" }
    port {
      port = 5432
    }
  }
}
