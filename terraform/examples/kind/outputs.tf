output "next_step" {
  value = "kubectl apply -f ../../../examples/helpfulness-pairwise.yaml && kubectl get labelingcampaigns -A -w"
}
