# Installs labelops into a cluster you already run, next to a Kafka and a PostgreSQL you
# already operate. The providers read the cluster from the environment:
#
#   export KUBE_CONFIG_PATH=~/.kube/config KUBE_CTX=my-cluster
#   terraform init && terraform apply -var-file=labelops.tfvars
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = ">= 2.0.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.20.0"
    }
  }
}

provider "kubernetes" {}

provider "helm" {}

module "labelops" {
  source = "../../modules/labelops"

  namespace        = var.namespace
  image_repository = var.image_repository
  image_tag        = var.image_tag
  kafka_bootstrap  = var.kafka_bootstrap
  postgres_dsn     = var.postgres_dsn

  values = {
    metrics = {
      serviceMonitor = { enabled = var.prometheus_operator }
      prometheusRule = { enabled = var.prometheus_operator }
    }
    networkPolicy = { enabled = true }
  }
}
