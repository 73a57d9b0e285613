# Global entry points across Herald regions on Route 53: one health check per
# regional endpoint and one CNAME record per region for each global hostname,
# with latency (or failover) routing. An unhealthy region is left out of DNS
# answers; its clients reconnect to another region.
#
# With the region module's multi_region set, a client that moves region
# resumes exactly there (the other region reads a replica of this region's
# events). DNS is the slow path: Herald's clients also learn the other
# regions' URLs (herald.hello alternates) and fail over without waiting for
# a TTL. An evacuated region answers 503 on /readyz, so it leaves DNS too.

locals {
  endpoints = {
    client = {
      hostname = var.client_hostname
      routing  = var.client_routing
      targets  = { for name, r in var.regions : name => r.client_target }
    }
    publish = {
      hostname = var.publish_hostname
      routing  = var.publish_routing
      targets  = { for name, r in var.regions : name => (r.publish_target != "" ? r.publish_target : r.client_target) }
    }
  }

  # One record (and health check) per endpoint kind and region.
  records = merge([
    for kind, e in local.endpoints : {
      for name, target in e.targets : "${kind}/${name}" => {
        kind       = kind
        region     = name
        hostname   = e.hostname
        routing    = e.routing
        target     = target
        aws_region = var.regions[name].aws_region
        role       = var.regions[name].failover_role
      }
    }
  ]...)

  # Targets shared by both endpoints get one health check.
  checked_targets = toset([for r in values(local.records) : r.target])

  failover_ok = {
    for kind, e in local.endpoints : kind => (
      e.routing != "failover" || (
        length(var.regions) == 2 &&
        length([for r in values(var.regions) : r if r.failover_role == "PRIMARY"]) == 1
      )
    )
  }
}

resource "aws_route53_health_check" "endpoint" {
  for_each = local.checked_targets

  fqdn              = each.key
  port              = var.health_check.port
  type              = var.health_check.protocol
  resource_path     = var.health_check.path
  enable_sni        = var.health_check.protocol == "HTTPS"
  failure_threshold = var.health_check.failure_threshold
  request_interval  = var.health_check.request_interval
  measure_latency   = true
  regions           = length(var.health_check.checker_regions) > 0 ? var.health_check.checker_regions : null

  tags = merge(var.tags, {
    Name = "herald ${each.key}${var.health_check.path}"
  })
}

resource "aws_route53_record" "endpoint" {
  for_each = local.records

  zone_id         = var.zone_id
  name            = each.value.hostname
  type            = "CNAME"
  ttl             = var.ttl
  records         = [each.value.target]
  set_identifier  = "herald-${each.value.region}"
  health_check_id = aws_route53_health_check.endpoint[each.value.target].id

  dynamic "latency_routing_policy" {
    for_each = each.value.routing == "latency" ? [each.value.aws_region] : []
    content {
      region = latency_routing_policy.value
    }
  }

  dynamic "failover_routing_policy" {
    for_each = each.value.routing == "failover" ? [each.value.role] : []
    content {
      type = failover_routing_policy.value
    }
  }

  lifecycle {
    precondition {
      condition     = local.failover_ok[each.value.kind]
      error_message = "Failover routing needs exactly two regions, one with failover_role = \"PRIMARY\"."
    }
    precondition {
      condition     = var.client_hostname != var.publish_hostname
      error_message = "client_hostname and publish_hostname must differ (each gets its own set of records)."
    }
  }
}
