# Two federated Herald regions behind health-checked global DNS.
#
# Each region is its own gossip pool with its own Redis primary, and holds a
# local replica of the other region's primary (set up on the Redis side:
# docs/multi-region.md). The regions' pods form one WAN pool through each
# other's seed load balancer (wan.<region>.push.<domain>, published by
# external-dns), so clients learn the other region as an alternate and
# resume there exactly after a region loss or an evacuation. Before running:
# create in each cluster's "herald" namespace the Secrets referenced by name
# (herald-gossip, herald-wan, herald-jwt, herald-redis, herald-redis-<other
# region>, the Ingress TLS Secret): docs/deploy.md.

provider "kubernetes" {
  alias          = "eu_west"
  config_path    = var.kubeconfig_path
  config_context = var.eu_west_context
}

provider "helm" {
  alias = "eu_west"
  kubernetes = {
    config_path    = var.kubeconfig_path
    config_context = var.eu_west_context
  }
}

provider "kubernetes" {
  alias          = "us_east"
  config_path    = var.kubeconfig_path
  config_context = var.us_east_context
}

provider "helm" {
  alias = "us_east"
  kubernetes = {
    config_path    = var.kubeconfig_path
    config_context = var.us_east_context
  }
}

provider "aws" {
  region = var.aws_region
}

locals {
  chart_dir = "${path.module}/../../../deploy/helm/herald"
  image = {
    repository = var.image_repository
    tag        = var.image_tag
  }
  pod_cidrs = {
    "eu-west" = var.eu_west_pod_cidr
    "us-east" = var.us_east_pod_cidr
  }

  # Each region: its client URL, its WAN seed name, and what it reads of the
  # other region (the local replica's URL is in herald-redis-<other>).
  multi_region = {
    for name, other in { "eu-west" = "us-east", "us-east" = "eu-west" } : name => {
      region_url                   = "https://${name}.push.${var.domain}"
      remote_redis = {
        (other) = { existing_secret = "herald-redis-${other}" }
      }
      wan_join           = ["wan.${other}.push.${var.domain}:7947"]
      wan_allow_cidrs    = [local.pod_cidrs[other]]
      wan_key_secret     = { name = "herald-wan" }
      session_key_secret = { name = "herald-session" }
      wan_seed = {
        hostname = "wan.${name}.push.${var.domain}"
        annotations = {
          "service.beta.kubernetes.io/aws-load-balancer-type"   = "nlb"
          "service.beta.kubernetes.io/aws-load-balancer-scheme" = "internal"
        }
      }
    }
  }
}

module "eu_west" {
  source = "../../modules/region"
  providers = {
    kubernetes = kubernetes.eu_west
    helm       = helm.eu_west
  }

  region       = "eu-west"
  namespace    = "herald"
  values_files = ["${local.chart_dir}/values-eu-west.yaml"]
  image        = local.image

  # Sentinel URL with its password lives in the Secret herald-redis (key redis-url).
  redis = {
    mode            = "sentinel"
    existing_secret = "herald-redis"
  }
  gossip_key_secret = {
    name = "herald-gossip"
  }

  public_hostname = "eu-west.push.${var.domain}"
  tls_secret_name = "push-eu-west-tls"
  autoscaling = {
    enabled                = true
    target_streams_per_pod = 8000
  }
  service_monitor = true
  multi_region    = local.multi_region["eu-west"]
}

module "us_east" {
  source = "../../modules/region"
  providers = {
    kubernetes = kubernetes.us_east
    helm       = helm.us_east
  }

  region       = "us-east"
  namespace    = "herald"
  values_files = ["${local.chart_dir}/values-us-east.yaml"]
  image        = local.image

  # Managed Redis (TLS endpoint); the URL with its password is in herald-redis.
  redis = {
    mode            = "managed"
    existing_secret = "herald-redis"
  }

  public_hostname      = "us-east.push.${var.domain}"
  tls_secret_name      = "push-us-east-tls"
  drain_window_seconds = 20
  replicas             = 4
  multi_region         = local.multi_region["us-east"]
  values = {
    # us-east's values file routes through a Gateway; this example uses the
    # module's Ingress in both regions instead.
    httpRoute = {
      enabled = false
    }
  }
}

module "global" {
  source = "../../modules/global"

  zone_id          = var.route53_zone_id
  client_hostname  = "push.${var.domain}"
  publish_hostname = "publish.${var.domain}"
  client_routing   = "latency"
  publish_routing  = "latency"

  regions = {
    "eu-west" = {
      aws_region     = "eu-west-1"
      client_target  = module.eu_west.public_hostname
      publish_target = module.eu_west.publish_hostname
    }
    "us-east" = {
      aws_region     = "us-east-1"
      client_target  = module.us_east.public_hostname
      publish_target = module.us_east.publish_hostname
    }
  }

  tags = {
    app = "herald"
  }
}
