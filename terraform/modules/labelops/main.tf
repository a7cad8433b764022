locals {
  namespace = var.create_namespace ? kubernetes_namespace_v1.this[0].metadata[0].name : var.namespace

  # Secret names and keys the chart reads (kafka.bootstrapSecret, postgres.dsnSecret).
  kafka_secret    = "${var.release_name}-kafka"
  postgres_secret = "${var.release_name}-postgres"

  chart_values = {
    image = merge(
      { repository = var.image_repository },
      var.image_tag == null ? {} : { tag = var.image_tag },
    )
    kafka = merge(
      { bootstrapSecret = { name = local.kafka_secret, key = "bootstrap" } },
      var.worker_kafka_bootstrap == null ? {} : { workerBootstrap = var.worker_kafka_bootstrap },
    )
    postgres = merge(
      { dsnSecret = { name = local.postgres_secret, key = "dsn" } },
      var.worker_postgres_host == null ? {} : { workerHost = var.worker_postgres_host },
    )
  }
}

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "labelops"
    }
  }
}

# Connection settings live in Secrets, never in chart values: `helm get values` and the
# release history stay free of credentials.
resource "kubernetes_secret_v1" "kafka" {
  metadata {
    name      = local.kafka_secret
    namespace = local.namespace
  }
  data = {
    bootstrap = var.kafka_bootstrap
  }
}

resource "kubernetes_secret_v1" "postgres" {
  metadata {
    name      = local.postgres_secret
    namespace = local.namespace
  }
  data = {
    dsn = var.postgres_dsn
  }
}

resource "helm_release" "labelops" {
  name       = var.release_name
  namespace  = local.namespace
  chart      = coalesce(var.chart, "${path.module}/../../../charts/labelops")
  repository = var.chart_repository
  version    = var.chart_version
  wait       = var.wait

  # yamlencode twice, not `set`: values keep their types, and the same arguments work
  # with helm provider 2.x and 3.x.
  values = [yamlencode(local.chart_values), yamlencode(var.values)]

  # The operator exits when its Secrets are missing; create them first.
  depends_on = [kubernetes_secret_v1.kafka, kubernetes_secret_v1.postgres]
}
