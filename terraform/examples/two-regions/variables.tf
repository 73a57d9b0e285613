variable "kubeconfig_path" {
  type        = string
  description = "Kubeconfig file holding the contexts of both regional clusters."
  default     = "~/.kube/config"
}

variable "eu_west_context" {
  type        = string
  description = "Kubeconfig context of the eu-west cluster."
}

variable "us_east_context" {
  type        = string
  description = "Kubeconfig context of the us-east cluster."
}

variable "aws_region" {
  type        = string
  description = "AWS region of the provider that manages Route 53 (a global service; any region works)."
  default     = "us-east-1"
}

variable "route53_zone_id" {
  type        = string
  description = "Route 53 hosted zone of domain."
}

variable "domain" {
  type        = string
  description = "DNS domain of the endpoints, e.g. example.com: global push.<domain> / publish.<domain>, regional <region>.push.<domain>."
}

variable "image_repository" {
  type        = string
  description = "Registry repository of the Herald image (make image, then push)."
}

variable "image_tag" {
  type        = string
  description = "Herald image tag to deploy in both regions."
}

variable "eu_west_pod_cidr" {
  type        = string
  description = "Pod CIDR of the eu-west cluster: the only source us-east admits on its WAN port (pod IPs must be routable between the clusters, e.g. peered VPCs with VPC-native pods)."
}

variable "us_east_pod_cidr" {
  type        = string
  description = "Pod CIDR of the us-east cluster: the only source eu-west admits on its WAN port."
}
