output "client_url" {
  description = "Global subscriber URL base (EventSource: <this>/v1/stream?topic=...)."
  value       = "https://${module.global.client_fqdn}"
}

output "publish_url" {
  description = "Global publisher URL base (POST <this>/v1/topics/{topic}/events)."
  value       = "https://${module.global.publish_fqdn}"
}

output "regional_endpoints" {
  description = "Per region: client and publish base URLs, the URL other regions' clients fail over to, the WAN seed and the private admin Service."
  value = {
    for m in [module.eu_west, module.us_east] : m.region => {
      client     = m.client_endpoint
      publish    = m.publish_endpoint
      region_url = m.region_url
      wan_seed   = m.wan_seed
      admin      = m.admin_service
    }
  }
}
