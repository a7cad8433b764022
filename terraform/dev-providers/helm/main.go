// Command terraform-provider-helm serves hashicorp/helm v1.3.2, the only release of the
// provider the Go module proxy serves, so that `terraform validate` and `apply` of
// terraform/ can run here. The module only uses arguments every release since 1.3 has.
package main

import (
	"github.com/hashicorp/terraform-plugin-sdk/plugin"
	"github.com/hashicorp/terraform-provider-helm/helm"
)

func main() { plugin.Serve(&plugin.ServeOpts{ProviderFunc: helm.Provider}) }
