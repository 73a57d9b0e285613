output "region" {
  description = "Herald region name of this deployment."
  value       = var.region
}

output "namespace" {
  description = "Namespace of the release."
  value       = local.namespace
}

output "release_name" {
  description = "Helm release name (also the prefix of every object name)."
  value       = helm_release.herald.name
}

output "client_endpoint" {
  description = "Base URL subscribers use in this region (streams at /v1/stream): the regional public hostname over HTTPS, or the in-cluster public Service when no hostname is set."
  value       = var.public_hostname != "" ? "https://${var.public_hostname}" : "http://${var.release_name}.${local.namespace}.svc.cluster.local:8080"
}

output "publish_endpoint" {
  description = "Base URL publishers use in this region (POST /v1/topics/{topic}/events, /v1/events)."
  value       = local.publish_hostname != "" ? "https://${local.publish_hostname}" : "http://${var.release_name}.${local.namespace}.svc.cluster.local:8080"
}

output "public_hostname" {
  description = "Regional hostname of the client endpoint (target of the global DNS records), or empty."
  value       = var.public_hostname
}

output "publish_hostname" {
  description = "Regional hostname of the publish endpoint (target of the global DNS records), or empty."
  value       = local.publish_hostname
}

output "admin_service" {
  description = "In-cluster admin address (private: /metrics, /readyz, herald members --admin http://<this>)."
  value       = "${var.release_name}-admin.${local.namespace}.svc.cluster.local:8081"
}

output "gossip_service" {
  description = "Headless gossip Service the pods join (DNS name:port)."
  value       = "${var.release_name}-gossip.${local.namespace}.svc.cluster.local:7946"
}

output "region_url" {
  description = "Client base URL this region advertises to other regions' clients (multi_region.region_url), or empty."
  value       = try(var.multi_region.region_url, "")
}

output "wan_seed" {
  description = "host:port other regions put in their multi_region.wan_join (the WAN seed load balancer's DNS name), or empty."
  value       = try(var.multi_region.wan_seed.hostname, "") == "" ? "" : "${var.multi_region.wan_seed.hostname}:${var.multi_region.wan_port}"
}
