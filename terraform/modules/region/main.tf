# One Herald region: a namespace and a Helm release of deploy/helm/herald.
#
# The kubernetes and helm providers (which cluster, which context) are
# configured by the caller and passed in, so this module can be used with
# for_each and several regions can live in one root configuration.
#
# Secrets are referenced by name only (gossip key, JWT key files, a Redis URL
# with a password, TLS): nothing secret enters the Terraform state or the
# Helm release values.

locals {
  default_chart_path = "${path.module}/../../../deploy/helm/herald"
  chart              = coalesce(var.chart_path, local.default_chart_path)
  namespace          = var.create_namespace ? kubernetes_namespace_v1.this[0].metadata[0].name : var.namespace
  publish_hostname   = var.publish_hostname != "" ? var.publish_hostname : var.public_hostname
  hostnames          = distinct(compact([var.public_hostname, local.publish_hostname]))

  # Only what is set here overrides the values files; null variables leave
  # the values files and the chart defaults alone.
  module_values = merge(
    {
      fullnameOverride = var.release_name
      region           = var.region
      redis = {
        url            = var.redis.url
        existingSecret = var.redis.existing_secret
        secretKey      = var.redis.secret_key
      }
      gossip = {
        existingSecret = var.gossip_key_secret.name
        secretKey      = var.gossip_key_secret.key
      }
      existingConfigSecret = var.config_secret_name
    },
    var.replicas == null ? {} : { replicaCount = var.replicas },
    var.drain_window_seconds == null ? {} : {
      drain = {
        window          = var.drain_window_seconds
        shutdownTimeout = max(30, var.drain_window_seconds + 20)
      }
    },
    var.autoscaling == null ? {} : {
      autoscaling = {
        enabled             = var.autoscaling.enabled
        minReplicas         = var.autoscaling.min_replicas
        maxReplicas         = var.autoscaling.max_replicas
        targetStreamsPerPod = tostring(var.autoscaling.target_streams_per_pod)
      }
    },
    var.service_monitor == null ? {} : { serviceMonitor = { enabled = var.service_monitor } },
    length(local.hostnames) == 0 ? {} : {
      ingress = {
        enabled   = true
        className = var.ingress_class
        hosts     = [for h in local.hostnames : { host = h, paths = [{ path = "/", pathType = "Prefix" }] }]
        tls       = var.tls_secret_name == "" ? [] : [{ secretName = var.tls_secret_name, hosts = local.hostnames }]
      }
    },
    var.image == null ? {} : {
      image = {
        repository = var.image.repository
        tag        = var.image.tag
        digest     = var.image.digest
      }
    },
    try(var.multi_region.session_key_secret, null) == null ? {} : {
      sessionKey = {
        existingSecret = var.multi_region.session_key_secret.name
        secretKey      = var.multi_region.session_key_secret.key
      }
    },
    var.multi_region == null ? {} : {
      multiRegion = {
        enabled   = true
        regionURL = var.multi_region.region_url
        remoteRedis = {
          for name, r in var.multi_region.remote_redis : name => (
            r.existing_secret != ""
            ? { existingSecret = r.existing_secret, secretKey = r.secret_key }
            : { url = r.url }
          )
        }
        wan = {
          port           = var.multi_region.wan_port
          join           = var.multi_region.wan_join
          existingSecret = try(var.multi_region.wan_key_secret.name, "")
          secretKey      = try(var.multi_region.wan_key_secret.key, "wan-key")
          allowFrom      = [for c in var.multi_region.wan_allow_cidrs : { ipBlock = { cidr = c } }]
          seedService = {
            enabled = var.multi_region.wan_seed != null
            type    = try(var.multi_region.wan_seed.load_balancer_type, "LoadBalancer")
            annotations = merge(
              try(var.multi_region.wan_seed.annotations, {}),
              try(var.multi_region.wan_seed.hostname, "") == "" ? {} : {
                "external-dns.alpha.kubernetes.io/hostname" = var.multi_region.wan_seed.hostname
              },
            )
            loadBalancerSourceRanges = try(var.multi_region.wan_seed.restrict_source_ranges, true) ? var.multi_region.wan_allow_cidrs : []
          }
        }
      }
    },
    var.jwt == null ? {} : {
      auth = {
        audience = var.jwt.audience
        issuers  = var.jwt.issuers
        jwt = {
          existingSecret = var.jwt.secret_name
          keys = [for k in var.jwt.keys : {
            id        = k.id
            issuer    = k.issuer
            algorithm = k.algorithm
            secretKey = k.secret_key
          }]
        }
      }
    },
  )
}

resource "kubernetes_namespace_v1" "this" {
  count = var.create_namespace ? 1 : 0

  metadata {
    name = var.namespace
    labels = {
      "app.kubernetes.io/part-of" = "herald"
      "herald.io/region"          = var.region
    }
  }
}

resource "helm_release" "herald" {
  name      = var.release_name
  namespace = local.namespace
  chart     = local.chart
  version   = var.chart_version

  # Values files first, then what this module manages, then free-form overrides.
  values = concat(
    [for f in var.values_files : file(f)],
    [yamlencode(local.module_values), yamlencode(var.values)],
  )

  # Wait for every pod to be ready (readiness = Redis reachable); roll back a
  # release that does not become ready. Rollouts drain one pod at a time.
  wait            = true
  atomic          = true
  cleanup_on_fail = true
  timeout         = var.helm_timeout
  max_history     = 10
  lint            = true

  lifecycle {
    precondition {
      condition     = var.multi_region == null || !contains(keys(try(var.multi_region.remote_redis, {})), var.region)
      error_message = "multi_region.remote_redis must not name this module's own region: its events are in var.redis."
    }
  }
}
