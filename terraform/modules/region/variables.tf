variable "region" {
  type        = string
  description = "Herald region (origin) name of this deployment, e.g. \"eu-west\": the chart's `region`, stamped on every event published here."

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,31}$", var.region))
    error_message = "The region must match [a-z0-9][a-z0-9-]* and be at most 32 characters (Herald's origin grammar)."
  }
}

variable "namespace" {
  type        = string
  description = "Kubernetes namespace of the release. The Kubernetes cluster and context come from the kubernetes/helm providers the caller passes in (see examples/two-regions)."
  default     = "herald"
}

variable "create_namespace" {
  type        = bool
  description = "Create the namespace (with Herald labels). Set false when it is managed elsewhere; the referenced Secrets must live in it either way."
  default     = true
}

variable "release_name" {
  type        = string
  description = "Helm release name; also the chart's fullnameOverride, so Service names are predictable (<release>, <release>-admin, <release>-gossip)."
  default     = "herald"
}

variable "chart_path" {
  type        = string
  description = "Path (or OCI/repo reference) of the Herald chart. Null means the chart in this repository (deploy/helm/herald)."
  default     = null
}

variable "chart_version" {
  type        = string
  description = "Chart version when chart_path is a repository or OCI reference; null for a local path."
  default     = null
}

variable "values_files" {
  type        = list(string)
  description = "Values files applied first, in order (e.g. deploy/helm/herald/values-eu-west.yaml). The module's own settings and `values` are applied after them."
  default     = []
}

variable "values" {
  type        = any
  description = "Extra chart values (an object), applied last. Never put secrets here: they would be stored in the Terraform state and the Helm release."
  default     = {}
}

variable "image" {
  type = object({
    repository = string
    tag        = optional(string, "")
    digest     = optional(string, "")
  })
  description = "Herald image. Empty tag means the chart's appVersion; a digest (sha256:...) pins the image and wins over the tag."
  default     = null
}

variable "replicas" {
  type        = number
  description = "Pods when autoscaling is off; null leaves it to the values files (chart default 3)."
  default     = null
}

variable "redis" {
  type = object({
    mode            = string
    url             = optional(string, "")
    existing_secret = optional(string, "")
    secret_key      = optional(string, "redis-url")
  })
  description = <<-EOT
    This region's Redis. mode is "sentinel" (self-managed Redis with Sentinel: url redis+sentinel://h1:26379,h2:26379,h3:26379/<master>)
    or "managed" (a cloud Redis endpoint: url redis:// or rediss://). Give either url (no credentials in it) or existing_secret:
    the name of a Kubernetes Secret in the namespace whose key secret_key holds the full URL with its password (kept out of the state).
  EOT

  validation {
    condition     = contains(["sentinel", "managed"], var.redis.mode)
    error_message = "redis.mode must be \"sentinel\" or \"managed\"."
  }
  validation {
    condition     = (var.redis.url == "") != (var.redis.existing_secret == "")
    error_message = "Set exactly one of redis.url and redis.existing_secret."
  }
  validation {
    condition     = !strcontains(var.redis.url, "@")
    error_message = "redis.url must not carry credentials; put the full URL in a Secret and use redis.existing_secret."
  }
  validation {
    condition = var.redis.url == "" || (
      var.redis.mode == "sentinel"
      ? can(regex("^rediss?\\+sentinel://", var.redis.url))
      : can(regex("^rediss?://", var.redis.url))
    )
    error_message = "mode \"sentinel\" needs a redis+sentinel:// (or rediss+sentinel://) URL; mode \"managed\" a redis:// or rediss:// URL."
  }
}

variable "multi_region" {
  type = object({
    region_url = string
    remote_redis = map(object({
      url             = optional(string, "")
      existing_secret = optional(string, "")
      secret_key      = optional(string, "redis-url")
    }))
    wan_join        = list(string)
    wan_allow_cidrs = list(string)
    wan_port        = optional(number, 7947)
    wan_key_secret = optional(object({
      name = string
      key  = optional(string, "wan-key")
    }))
    session_key_secret = optional(object({
      name = string
      key  = optional(string, "session-key")
    }))
    wan_seed = optional(object({
      hostname               = optional(string, "")
      annotations            = optional(map(string), {})
      load_balancer_type     = optional(string, "LoadBalancer")
      restrict_source_ranges = optional(bool, true)
    }))
  })
  description = <<-EOT
    Multi-region (docs/multi-region.md); null keeps the region on its own. region_url: this region's client base URL
    (https://<public_hostname>), learned by other regions' clients as an alternate. remote_redis: region name => the LOCAL
    replica of that region's Redis primary, as url (no credentials) or existing_secret/secret_key (a Secret in the
    namespace holding the full URL). wan_join: WAN seeds host:port of the other regions (their wan_seed hostnames).
    wan_allow_cidrs: the other regions' pod CIDRs, the only sources admitted on the WAN port (pod IPs must be routable
    between the clusters: peered VPCs with VPC-native pods, or a multi-cluster network). wan_key_secret: Secret holding
    the WAN key shared by every region (null: the gossip key, which must then be the same everywhere).
    session_key_secret: Secret holding session_key, the same in every region so sessions follow clients across
    regions (ADR 0014; null: derived from the region's gossip key, a cross-region resume starts a new session). wan_seed: an
    internal load balancer on the WAN port (TCP) that other regions join through; hostname is published by external-dns.
  EOT
  default     = null

  validation {
    condition     = var.multi_region == null || can(regex("^https?://[^/]+/?$", var.multi_region.region_url))
    error_message = "multi_region.region_url must be http(s)://host[:port]."
  }
  validation {
    condition = var.multi_region == null || alltrue([
      for name, r in var.multi_region.remote_redis :
      can(regex("^[a-z0-9][a-z0-9-]{0,31}$", name)) && ((r.url == "") != (r.existing_secret == "")) && !strcontains(r.url, "@")
    ])
    error_message = "multi_region.remote_redis: names are [a-z0-9][a-z0-9-]* (at most 32 characters); each entry sets exactly one of url (without credentials) and existing_secret."
  }
  validation {
    condition     = var.multi_region == null || length(var.multi_region.remote_redis) <= 15
    error_message = "multi_region.remote_redis: at most 15 other regions (16 origins per cursor)."
  }
  validation {
    condition = var.multi_region == null || (length(var.multi_region.wan_allow_cidrs) > 0 && alltrue([
      for c in var.multi_region.wan_allow_cidrs : can(cidrnetmask(c)) && !endswith(c, "/0")
    ]))
    error_message = "multi_region.wan_allow_cidrs: at least one IPv4 CIDR, none of them /0: the WAN port is never open to everyone."
  }
}

variable "gossip_key_secret" {
  type = object({
    name = string
    key  = optional(string, "gossip-key")
  })
  description = "Existing Kubernetes Secret (name, key) holding the gossip key made by `herald gossip-key`; the same key on every pod of the region. Only the name is stored in the state."
  default = {
    name = "herald-gossip"
  }
}

variable "jwt" {
  type = object({
    secret_name = string
    audience    = optional(string, "herald")
    issuers     = optional(list(string), [])
    keys = list(object({
      id         = optional(string, "")
      issuer     = optional(string, "")
      algorithm  = string
      secret_key = string
    }))
  })
  description = "JWT verification: secret_name is an existing Secret whose keys are the key files (HMAC secrets or PEM public keys), each key entry names its file (secret_key) and pins its algorithm. Null leaves auth to values_files/values."
  default     = null
}

variable "config_secret_name" {
  type        = string
  description = "Existing Secret holding a complete herald.yaml (key herald.yaml), mounted instead of the chart's ConfigMap: for API key hashes or other configuration you keep in a secret store. Empty: the chart renders the ConfigMap."
  default     = ""
}

variable "public_hostname" {
  type        = string
  description = "Regional hostname for subscribers (EventSource, SDK), e.g. eu-west.push.example.com: an Ingress rule is created for it. Empty: no Ingress, endpoints are the in-cluster Service."
  default     = ""
}

variable "publish_hostname" {
  type        = string
  description = "Regional hostname for publishers when it differs from public_hostname (e.g. an internal load balancer); empty means public_hostname."
  default     = ""
}

variable "ingress_class" {
  type        = string
  description = "IngressClass of the regional Ingress (the chart's streaming annotations assume ingress-nginx)."
  default     = "nginx"
}

variable "tls_secret_name" {
  type        = string
  description = "Existing TLS Secret for the Ingress hosts (e.g. issued by cert-manager); empty: no TLS section."
  default     = ""
}

variable "autoscaling" {
  type = object({
    enabled                = bool
    min_replicas           = optional(number, 3)
    max_replicas           = optional(number, 12)
    target_streams_per_pod = optional(number, 8000)
  })
  description = "HPA on open streams per pod (custom metric herald_streams_open: needs prometheus-adapter or another custom metrics API). Null leaves it to the values files (chart default: off)."
  default     = null
}

variable "drain_window_seconds" {
  type        = number
  description = "cluster.drain_window in seconds: a terminating pod closes its streams spread over this window; shutdown_timeout becomes max(30, window + 20) and the chart derives the termination grace from both. Null leaves both to the values files (chart default 10 s)."
  default     = null

  validation {
    condition     = var.drain_window_seconds == null || (coalesce(var.drain_window_seconds, 0) >= 0 && coalesce(var.drain_window_seconds, 0) < 300)
    error_message = "drain_window_seconds must be between 0 and 299."
  }
}

variable "service_monitor" {
  type        = bool
  description = "Create a Prometheus Operator ServiceMonitor for the admin /metrics; null leaves it to the values files (chart default: off)."
  default     = null
}

variable "helm_timeout" {
  type        = number
  description = "Seconds Helm waits for the rollout (every pod ready) before the release fails and is rolled back."
  default     = 900
}
