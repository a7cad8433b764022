# labelops on a local kind cluster, with throwaway Kafka and PostgreSQL inside it (data.tf).
# Needs Docker, so not on the project's build machines:
#
#   kind create cluster --name labelops
#   make image && kind load docker-image labelops:0.1.0 --name labelops
#   export KUBE_CONFIG_PATH=~/.kube/config KUBE_CTX=kind-labelops
#   terraform init && terraform apply
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

  image_repository = "labelops"
  image_tag        = var.image_tag
  kafka_bootstrap  = local.kafka_bootstrap
  postgres_dsn     = local.postgres_dsn

  values = {
    # `kind load` put the image on the node; there is no registry to pull from.
    image = { pullPolicy = "Never" }
  }

  # The operator connects at start: let the backends come up first.
  depends_on = [kubernetes_deployment_v1.kafka, kubernetes_deployment_v1.postgres]
}
