terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # The module only uses arguments that helm provider 2.x and 3.x share (values, not set).
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
