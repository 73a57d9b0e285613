output "client_fqdn" {
  description = "Global hostname for subscribers (EventSource URL base: https://<this>/v1/stream)."
  value       = var.client_hostname
}

output "publish_fqdn" {
  description = "Global hostname for publishers (https://<this>/v1/topics/{topic}/events)."
  value       = var.publish_hostname
}

output "health_check_ids" {
  description = "Route 53 health check ID per regional target hostname (for CloudWatch alarms on HealthCheckStatus)."
  value       = { for target, hc in aws_route53_health_check.endpoint : target => hc.id }
}

output "record_ids" {
  description = "Route 53 record IDs, keyed \"client/<region>\" and \"publish/<region>\"."
  value       = { for k, r in aws_route53_record.endpoint : k => r.id }
}
