variable "zone_id" {
  type        = string
  description = "Route 53 hosted zone ID that holds client_hostname and publish_hostname."
}

variable "client_hostname" {
  type        = string
  description = "Global hostname subscribers connect to (e.g. push.example.com). Not the zone apex: the records are CNAMEs."
}

variable "publish_hostname" {
  type        = string
  description = "Global hostname publishers post to (e.g. publish.example.com). Not the zone apex: the records are CNAMEs."
}

variable "regions" {
  type = map(object({
    aws_region     = string
    client_target  = string
    publish_target = optional(string, "")
    failover_role  = optional(string, "SECONDARY")
  }))
  description = <<-EOT
    One entry per Herald region, keyed by Herald region name. aws_region is the AWS region closest to it (latency routing);
    client_target / publish_target are its regional hostnames (the region module's public_hostname / publish_hostname outputs;
    publish_target empty means client_target); failover_role is PRIMARY or SECONDARY, used only with "failover" routing.
  EOT

  validation {
    condition     = length(var.regions) >= 1
    error_message = "At least one region is required."
  }
  validation {
    condition     = alltrue([for r in values(var.regions) : contains(["PRIMARY", "SECONDARY"], r.failover_role)])
    error_message = "failover_role must be PRIMARY or SECONDARY."
  }
}

variable "client_routing" {
  type        = string
  description = "Routing of client_hostname: \"latency\" (nearest healthy region) or \"failover\" (PRIMARY while healthy, else SECONDARY; exactly two regions)."
  default     = "latency"

  validation {
    condition     = contains(["latency", "failover"], var.client_routing)
    error_message = "client_routing must be \"latency\" or \"failover\"."
  }
}

variable "publish_routing" {
  type        = string
  description = "Routing of publish_hostname: \"latency\" or \"failover\" (see client_routing)."
  default     = "latency"

  validation {
    condition     = contains(["latency", "failover"], var.publish_routing)
    error_message = "publish_routing must be \"latency\" or \"failover\"."
  }
}

variable "health_check" {
  type = object({
    path              = optional(string, "/readyz")
    port              = optional(number, 443)
    protocol          = optional(string, "HTTPS")
    failure_threshold = optional(number, 3)
    request_interval  = optional(number, 10)
    checker_regions   = optional(list(string), [])
  })
  description = "Route 53 health check of each regional endpoint. /readyz answers 503 while the region's Redis is unreachable or the answering pod drains; failure_threshold consecutive failures take the region out of DNS. checker_regions: empty for the AWS defaults, else at least three checker regions."
  default     = {}

  validation {
    condition     = contains(["HTTP", "HTTPS"], var.health_check.protocol)
    error_message = "health_check.protocol must be HTTP or HTTPS."
  }
  validation {
    condition     = contains([10, 30], var.health_check.request_interval)
    error_message = "health_check.request_interval must be 10 or 30 (seconds)."
  }
}

variable "ttl" {
  type        = number
  description = "TTL of the DNS records in seconds: how long resolvers keep a region after it fails its health checks."
  default     = 30
}

variable "tags" {
  type        = map(string)
  description = "Tags added to the health checks."
  default     = {}
}
