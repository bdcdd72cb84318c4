//! The `aws` provider: EC2 instances through the official AWS SDK for Rust (`aws-sdk-ec2`,
//! credentials and endpoints from `aws-config`'s standard chain).
//!
//! A config's `zone` is an AWS region (`eu-central-1`); the instance goes to any of its
//! availability zones (the default VPC's default subnet). What the workspace gets around its
//! instances, per region: a key pair `provisioning-<workspace>` with the operator's public key
//! (`[aws] ssh_public_key`) and a security group `provisioning-<workspace>` that admits SSH from
//! `[aws] ssh_from` and all traffic between its members. Both are removed with the
//! workspace's last instance.
//!
//! Every instance is tagged `Name=<workspace>-<server>`, `managed-by=provisioning`,
//! `prov-workspace`, `prov-server`, `prov-image` (plus the config's labels). Finding an
//! instance again is a lookup by those tags (states pending to stopped); a create also sends a
//! `ClientToken` derived from the step's idempotency key, so real EC2 answers a repeated launch
//! with the first instance even before the tags are searchable (eventual consistency), and an
//! emulator that ignores the token is still kept to one by the tag lookup.
//!
//! Images: the catalog names an owner and a name pattern (`136693071363/debian-13-{arch}-*`,
//! `{arch}` being `amd64` or `arm64` from the plan); the newest available AMI that matches in the
//! region is launched, so the same config gets the right AMI in every region.
//!
//! Waits use the SDK's waiters (`InstanceRunning`, `InstanceStopped`, `InstanceTerminated`:
//! the backoff AWS recommends, 15 s to 120 s with jitter, within `[aws] state_wait_secs`).
//!
//! Credentials: `[aws] access_key_id` and `secret_access_key` (secret references) when set,
//! else the standard chain — `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, the shared config and
//! credentials files (`AWS_PROFILE` or `[aws] profile`), SSO, `credential_process`, container and
//! instance roles. Whatever is found is registered with the redactor before it is used. The
//! endpoint: `[aws] endpoint`, else `AWS_ENDPOINT_URL_EC2`/`AWS_ENDPOINT_URL` (read by the SDK).
//!
//! Taskservs are installed over SSH once an instance runs ([`taskservs`]); the security group
//! then admits their public ports.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::Client;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::config::{Credentials, ProvideCredentials, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    AttributeValue, Filter, Instance, InstanceType, ResourceType, Tag, TagSpecification,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::ssh::{SshHost, SshProvider};
use super::{
    Health, IdempotencyKey, Observed, Provider, ProviderError, ProviderResult, ServerSpec,
    TaskservSpec,
};
use crate::secrets::{SecretRef, Secrets};

mod taskservs;
mod workspace;

const MANAGED_BY: &str = "managed-by";
const WORKSPACE: &str = "prov-workspace";
const SERVER: &str = "prov-server";
const IMAGE: &str = "prov-image";
/// Instance states in which an instance is still ours to find (not going or gone).
const LIVE: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// How EC2 is reached and who we are there.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    /// `[aws] endpoint`; `None`: the SDK's own (`AWS_ENDPOINT_URL_EC2`, `AWS_ENDPOINT_URL`,
    /// else the region's public endpoint).
    pub endpoint: Option<String>,
    /// `[aws] profile` (else `AWS_PROFILE`) of the shared config files (`None`: `default`).
    pub profile: Option<String>,
    /// `[aws] access_key_id` and `secret_access_key`; `None`: the standard credential chain.
    pub keys: Option<(SecretRef, SecretRef)>,
    /// Imported as the workspace's key pair (the default user's authorized key).
    pub ssh_public_key: Option<String>,
    /// CIDRs the security group admits to port 22.
    pub ssh_from: Vec<String>,
    /// The private key matching `ssh_public_key`: without it nothing is installed on instances.
    pub ssh_key: Option<SecretRef>,
    /// The account SSH reaches instances as (`None`: the image's, e.g. `admin` on Debian).
    pub ssh_user: Option<String>,
    /// Longest wait for an instance state.
    pub state_wait: Duration,
}

impl AwsSettings {
    /// Where credentials are looked for, for error messages (never a value).
    fn credentials_from(&self) -> String {
        match &self.keys {
            Some((id, secret)) => format!(
                "[aws] access_key_id ({}) and secret_access_key ({})",
                id.describe(),
                secret.describe()
            ),
            None => format!(
                "the AWS credential chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared \
                 config and credentials files (profile `{}`), SSO, credential_process, container \
                 and instance roles; or set [aws] access_key_id and secret_access_key",
                self.profile.as_deref().unwrap_or("default")
            ),
        }
    }
}

/// The `aws` provider.
#[derive(Debug)]
pub struct AwsProvider {
    settings: AwsSettings,
    secrets: Secrets,
    /// The SDK's shared configuration (credential chain, endpoint variables), loaded once.
    sdk: OnceCell<aws_config::SdkConfig>,
    /// Our records (each server's region and public ports) and the SSH runner's (`dir/ssh`).
    dir: std::path::PathBuf,
    /// Installs taskservs on our instances.
    ssh: SshProvider,
    /// One change at a time to the records of ports and the security groups' public rules.
    ports_lock: tokio::sync::Mutex<()>,
    /// The public ports of each server's taskservs, for the security group.
    ports: super::ports::PortRecords,
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| (*v).to_string()).collect()))
        .build()
}

fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn state(instance: &Instance) -> &str {
    instance
        .state()
        .and_then(|s| s.name())
        .map_or("", |n| n.as_str())
}

/// The `ClientToken` of one launch: the same step presents the same token on every attempt.
fn client_token(key: &IdempotencyKey) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.0.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("prov-{}", &hex[..40])
}

/// `owner/name-pattern` with `{arch}` filled in from the plan's architecture.
fn image_query(api: &str, arch: &str) -> ProviderResult<(String, String, &'static str)> {
    let (debian, ec2) = match arch {
        "aarch64" | "arm64" => ("arm64", "arm64"),
        _ => ("amd64", "x86_64"),
    };
    let (owner, pattern) = api.split_once('/').ok_or_else(|| {
        ProviderError::Permanent(format!(
            "the aws catalog's image `{api}` is not `OWNER/NAME-PATTERN`"
        ))
    })?;
    Ok((owner.to_string(), pattern.replace("{arch}", debian), ec2))
}

impl AwsProvider {
    pub fn new(settings: AwsSettings, secrets: Secrets, dir: std::path::PathBuf) -> AwsProvider {
        let account = SshHost {
            name: "aws".into(),
            address: String::new(),
            port: 22,
            user: settings.ssh_user.clone().unwrap_or_else(|| "admin".into()),
            key: settings.ssh_key.clone(),
            root: None,
            workspaces: vec!["*".into()],
            configured_in: "[aws] ssh_key, ssh_user".into(),
        };
        let ssh = SshProvider::for_cloud(account, secrets.clone(), dir.join("ssh"));
        AwsProvider {
            settings,
            secrets,
            sdk: OnceCell::new(),
            ports: super::ports::PortRecords::new(&dir),
            dir,
            ssh,
            ports_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// An EC2 client for `region`, with credentials resolved now (and known to the redactor).
    async fn client(&self, region: &str) -> ProviderResult<Client> {
        let sdk = self
            .sdk
            .get_or_init(|| async {
                // A region is set so that loading never asks the instance metadata service for
                // one; each client names its own.
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(Region::new("us-east-1"));
                if let Some(profile) = &self.settings.profile {
                    loader = loader.profile_name(profile);
                }
                loader.load().await
            })
            .await;
        let credentials = self.credentials(sdk).await?;
        let mut config = aws_sdk_ec2::config::Builder::from(sdk)
            .region(Region::new(region.to_string()))
            .credentials_provider(credentials);
        if let Some(endpoint) = &self.settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Client::from_conf(config.build()))
    }

    async fn credentials(&self, sdk: &aws_config::SdkConfig) -> ProviderResult<Credentials> {
        let missing = |why: String| {
            ProviderError::Permanent(format!(
                "provider `aws` has no credentials: {why} (looked in {})",
                self.settings.credentials_from()
            ))
        };
        let credentials = match &self.settings.keys {
            Some((id, secret)) => {
                let id = self
                    .secrets
                    .resolve(id)
                    .map_err(|e| missing(e.to_string()))?;
                let secret = self
                    .secrets
                    .resolve(secret)
                    .map_err(|e| missing(e.to_string()))?;
                Credentials::new(id.expose(), secret.expose(), None, None, "provisioning")
            }
            None => {
                let chain = sdk
                    .credentials_provider()
                    .ok_or_else(|| missing("the SDK has no credential chain".into()))?;
                chain
                    .provide_credentials()
                    .await
                    .map_err(|e| missing(DisplayErrorContext(&e).to_string()))?
            }
        };
        let redactor = self.secrets.redactor();
        redactor.register(credentials.access_key_id());
        redactor.register(credentials.secret_access_key());
        if let Some(token) = credentials.session_token() {
            redactor.register(token);
        }
        Ok(credentials)
    }

    /// An SDK error as a step error: auth refusals are permanent and say where credentials
    /// came from; throttling, capacity and network trouble are transient.
    fn fail<E>(&self, what: &str, region: &str, e: SdkError<E>) -> ProviderError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let Some(code) = e.code().map(str::to_string) else {
            let why = DisplayErrorContext(&e).to_string();
            return match e {
                SdkError::DispatchFailure(_)
                | SdkError::TimeoutError(_)
                | SdkError::ResponseError(_) => {
                    ProviderError::Transient(format!("EC2 ({region}) did not answer {what}: {why}"))
                }
                _ => ProviderError::Permanent(format!("EC2 ({region}) {what} failed: {why}")),
            };
        };
        let message = e.message().unwrap_or_default().to_string();
        let said = format!("EC2 ({region}) refused {what}: {code}: {message}");
        match code.as_str() {
            "AuthFailure"
            | "UnauthorizedOperation"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "OptInRequired"
            | "Blocked" => ProviderError::Permanent(format!(
                "{said} (credentials from {})",
                self.settings.credentials_from()
            )),
            "RequestLimitExceeded"
            | "Throttling"
            | "InsufficientInstanceCapacity"
            | "InternalError"
            | "ServiceUnavailable"
            | "Unavailable"
            | "DependencyViolation"
            | "IncorrectInstanceState"
            | "InvalidInstanceID.NotFound" => ProviderError::Transient(said),
            _ => ProviderError::Permanent(said),
        }
    }

    /// Our instance for `workspace`/`name` in `region`, if EC2 has one alive.
    async fn find(
        &self,
        client: &Client,
        region: &str,
        workspace: &str,
        name: &str,
    ) -> ProviderResult<Option<Instance>> {
        let out = client
            .describe_instances()
            .filters(filter(&format!("tag:{MANAGED_BY}"), &["provisioning"]))
            .filters(filter(&format!("tag:{WORKSPACE}"), &[workspace]))
            .filters(filter(&format!("tag:{SERVER}"), &[name]))
            .filters(filter("instance-state-name", &LIVE))
            .send()
            .await
            .map_err(|e| self.fail("DescribeInstances", region, e))?;
        let mine: Vec<Instance> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            // The filters are EC2's; the tags and states are checked here too.
            .filter(|i| {
                tag(i, MANAGED_BY) == Some("provisioning")
                    && tag(i, WORKSPACE) == Some(workspace)
                    && tag(i, SERVER) == Some(name)
                    && LIVE.contains(&state(i))
            })
            .collect();
        match mine.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.clone())),
            many => Err(ProviderError::Permanent(format!(
                "EC2 ({region}) has {} instances tagged as `{name}` of workspace `{workspace}` \
                 ({}); terminate the extra ones by hand, then apply again",
                many.len(),
                many.iter()
                    .filter_map(Instance::instance_id)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn instance(&self, client: &Client, region: &str, id: &str) -> ProviderResult<Instance> {
        let out = client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| self.fail("DescribeInstances", region, e))?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().iter())
            .next()
            .cloned()
            .ok_or_else(|| {
                ProviderError::Transient(format!("EC2 ({region}) does not list instance {id} yet"))
            })
    }

    /// After a waiter gave up: a permanent error when the instance went where it cannot come
    /// back from (with EC2's reason), else transient.
    async fn waited(
        &self,
        client: &Client,
        region: &str,
        id: &str,
        want: &str,
        why: String,
    ) -> ProviderError {
        match self.instance(client, region, id).await {
            Ok(i)
                if matches!(state(&i), "terminated" | "shutting-down") && want != "terminated" =>
            {
                ProviderError::Permanent(format!(
                    "EC2 ({region}) instance {id} is {} instead of {want}: {}",
                    state(&i),
                    i.state_reason()
                        .and_then(|r| r.message())
                        .unwrap_or("no reason given")
                ))
            }
            Ok(i) => ProviderError::Transient(format!(
                "EC2 ({region}) instance {id} is still `{}`, not `{want}`, after {} s ({why})",
                state(&i),
                self.settings.state_wait.as_secs()
            )),
            Err(e) => e,
        }
    }

    async fn wait_running(
        &self,
        client: &Client,
        region: &str,
        id: &str,
    ) -> ProviderResult<Instance> {
        if let Err(e) = client
            .wait_until_instance_running()
            .instance_ids(id)
            .wait(self.settings.state_wait)
            .await
        {
            let why = DisplayErrorContext(&e).to_string();
            return Err(self.waited(client, region, id, "running", why).await);
        }
        self.instance(client, region, id).await
    }

    async fn wait_stopped(&self, client: &Client, region: &str, id: &str) -> ProviderResult<()> {
        if let Err(e) = client
            .wait_until_instance_stopped()
            .instance_ids(id)
            .wait(self.settings.state_wait)
            .await
        {
            let why = DisplayErrorContext(&e).to_string();
            return Err(self.waited(client, region, id, "stopped", why).await);
        }
        Ok(())
    }

    /// The newest available AMI for the server's image in its region.
    async fn ami(&self, client: &Client, spec: &ServerSpec) -> ProviderResult<(String, String)> {
        let region = spec.zone.as_str();
        let (name, image) = spec.image_entry()?;
        let arch = knowledge::Catalog::embedded()
            .ok()
            .and_then(|c| {
                c.provider("aws")
                    .and_then(|p| p.plans.get(&spec.plan))
                    .map(|p| p.arch.clone())
            })
            .unwrap_or_else(|| "x86_64".into());
        let (owner, pattern, ec2_arch) = image_query(&image.api, &arch)?;
        let out = client
            .describe_images()
            .owners(&owner)
            .filters(filter("name", &[&pattern]))
            .filters(filter("architecture", &[ec2_arch]))
            .filters(filter("state", &["available"]))
            .send()
            .await
            .map_err(|e| self.fail("DescribeImages", region, e))?;
        let newest = out
            .images()
            .iter()
            .filter(|i| i.image_id().is_some())
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()));
        match newest.and_then(|i| i.image_id()) {
            Some(id) => Ok((name, id.to_string())),
            None => Err(ProviderError::Permanent(format!(
                "EC2 ({region}) has no AMI for image `{name}` on {ec2_arch}: none available named \
                 `{pattern}` from owner {owner} in this region; pick another image or region"
            ))),
        }
    }

    async fn launch(
        &self,
        client: &Client,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Instance> {
        let region = spec.zone.as_str();
        let (image, ami) = self.ami(client, spec).await?;
        let key_name = self.key_pair(client, region, &spec.workspace).await?;
        let group = self.security_group(client, region, &spec.workspace).await?;
        let labels: Vec<(String, String)> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain([
                (
                    "Name".to_string(),
                    format!("{}-{}", spec.workspace, spec.name),
                ),
                (IMAGE.to_string(), image),
            ])
            .collect();
        let launched = client
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::from(spec.plan.as_str()))
            .min_count(1)
            .max_count(1)
            .client_token(client_token(key))
            .security_group_ids(group)
            .set_key_name(key_name)
            .tag_specifications(tags(
                ResourceType::Instance,
                &spec.workspace,
                Some(&spec.name),
                &labels,
            ))
            .tag_specifications(tags(
                ResourceType::Volume,
                &spec.workspace,
                Some(&spec.name),
                &[],
            ))
            .send()
            .await
            .map_err(|e| self.fail("RunInstances", region, e))?;
        let id = launched
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| {
                ProviderError::Transient(format!(
                    "EC2 ({region}) answered RunInstances without an instance id"
                ))
            })?
            .to_string();
        self.wait_running(client, region, &id).await
    }

    /// Brings a found instance to `running`.
    async fn started(
        &self,
        client: &Client,
        region: &str,
        instance: Instance,
    ) -> ProviderResult<Instance> {
        let id = instance.instance_id().unwrap_or_default().to_string();
        match state(&instance) {
            "running" => Ok(instance),
            "stopping" | "stopped" => {
                if state(&instance) == "stopping" {
                    self.wait_stopped(client, region, &id).await?;
                }
                client
                    .start_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .map_err(|e| self.fail("StartInstances", region, e))?;
                self.wait_running(client, region, &id).await
            }
            _ => self.wait_running(client, region, &id).await,
        }
    }

    fn observed(region: &str, instance: &Instance) -> Observed {
        let mut attrs = BTreeMap::new();
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                attrs.insert(k.to_string(), Value::from(v));
            }
        };
        put("address", instance.public_ip_address());
        put("private_address", instance.private_ip_address());
        put("plan", instance.instance_type().map(InstanceType::as_str));
        put("zone", Some(region));
        put(
            "availability_zone",
            instance.placement().and_then(|p| p.availability_zone()),
        );
        put("state", Some(state(instance)));
        put("image", tag(instance, IMAGE));
        put("ami", instance.image_id());
        put("key_pair", instance.key_name());
        if let Some(ipv6) = instance.ipv6_address() {
            attrs.insert("ipv6".into(), json!(ipv6));
        }
        Observed {
            provider_id: instance.instance_id().unwrap_or_default().to_string(),
            attrs,
        }
    }
}

/// Our tags for a resource of `workspace` (and `server`), plus `extra`.
fn tags(
    kind: ResourceType,
    workspace: &str,
    server: Option<&str>,
    extra: &[(String, String)],
) -> TagSpecification {
    let mut all = vec![
        (MANAGED_BY.to_string(), "provisioning".to_string()),
        (WORKSPACE.to_string(), workspace.to_string()),
    ];
    if let Some(server) = server {
        all.push((SERVER.to_string(), server.to_string()));
    }
    all.extend(extra.iter().cloned());
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(
            all.into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &str {
        "aws"
    }

    async fn create_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let region = spec.zone.as_str();
        let client = self.client(region).await?;
        let instance = match self
            .find(&client, region, &spec.workspace, &spec.name)
            .await?
        {
            Some(found) => self.started(&client, region, found).await?,
            None => self.launch(&client, key, spec).await?,
        };
        self.attach(spec, Self::observed(region, &instance)).await
    }

    async fn update_server(
        &self,
        key: &IdempotencyKey,
        spec: &ServerSpec,
    ) -> ProviderResult<Observed> {
        let region = spec.zone.as_str();
        let client = self.client(region).await?;
        let Some(instance) = self
            .find(&client, region, &spec.workspace, &spec.name)
            .await?
        else {
            return self.create_server(key, spec).await;
        };
        let id = instance.instance_id().unwrap_or_default().to_string();
        if !spec.labels.is_empty() {
            let mut request = client.create_tags().resources(&id);
            for (k, v) in &spec.labels {
                request = request.tags(Tag::builder().key(k).value(v).build());
            }
            request
                .send()
                .await
                .map_err(|e| self.fail("CreateTags", region, e))?;
        }
        let is = instance.instance_type().map(InstanceType::as_str);
        if is != Some(spec.plan.as_str()) {
            // A type change needs the instance stopped; its EBS root volume is kept.
            if state(&instance) != "stopped" {
                client
                    .stop_instances()
                    .instance_ids(&id)
                    .send()
                    .await
                    .map_err(|e| self.fail("StopInstances", region, e))?;
                self.wait_stopped(&client, region, &id).await?;
            }
            client
                .modify_instance_attribute()
                .instance_id(&id)
                .instance_type(AttributeValue::builder().value(&spec.plan).build())
                .send()
                .await
                .map_err(|e| self.fail("ModifyInstanceAttribute", region, e))?;
        }
        let now = self.instance(&client, region, &id).await?;
        let running = self.started(&client, region, now).await?;
        self.attach(spec, Self::observed(region, &running)).await
    }

    async fn inspect_server(&self, spec: &ServerSpec) -> ProviderResult<Option<Observed>> {
        let region = spec.zone.as_str();
        let client = self.client(region).await?;
        Ok(self
            .find(&client, region, &spec.workspace, &spec.name)
            .await?
            .map(|i| Self::observed(region, &i)))
    }

    async fn delete_server(&self, _key: &IdempotencyKey, spec: &ServerSpec) -> ProviderResult<()> {
        let region = spec.zone.as_str();
        let client = self.client(region).await?;
        if let Some(instance) = self
            .find(&client, region, &spec.workspace, &spec.name)
            .await?
        {
            let id = instance.instance_id().unwrap_or_default().to_string();
            client
                .terminate_instances()
                .instance_ids(&id)
                .send()
                .await
                .map_err(|e| self.fail("TerminateInstances", region, e))?;
            if let Err(e) = client
                .wait_until_instance_terminated()
                .instance_ids(&id)
                .wait(self.settings.state_wait)
                .await
            {
                let why = DisplayErrorContext(&e).to_string();
                return Err(self.waited(&client, region, &id, "terminated", why).await);
            }
        }
        // The machine is gone with everything on it.
        self.forget(&client, region, spec).await?;
        self.tidy(&client, region, &spec.workspace).await
    }

    async fn install_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<Observed> {
        self.ready_for(spec).await?;
        let observed = self.ssh.install_taskserv(key, spec).await?;
        self.taskserv_ports(spec, true).await?;
        Ok(observed)
    }

    async fn taskserv_health(&self, spec: &TaskservSpec) -> ProviderResult<Health> {
        // A terminated instance takes its taskservs with it.
        if !self.ssh.is_registered(&spec.workspace, &spec.server)
            || !self.instance_there(spec).await?
        {
            return Ok(Health::Missing);
        }
        self.ssh.taskserv_health(spec).await
    }

    async fn remove_taskserv(
        &self,
        key: &IdempotencyKey,
        spec: &TaskservSpec,
    ) -> ProviderResult<()> {
        if self.ssh.is_registered(&spec.workspace, &spec.server)
            && self.instance_there(spec).await?
        {
            self.ssh.remove_taskserv(key, spec).await?;
        }
        self.taskserv_ports(spec, false).await
    }

    fn read_secret(&self, name: &str) -> ProviderResult<crate::secrets::Secret> {
        self.ssh.read_secret(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_token_is_stable_per_step_and_fits_ec2() {
        let a = client_token(&IdempotencyKey("wf-1/create:web-1".into()));
        assert_eq!(a, client_token(&IdempotencyKey("wf-1/create:web-1".into())));
        assert_ne!(a, client_token(&IdempotencyKey("wf-2/create:web-1".into())));
        assert!(a.len() <= 64 && a.is_ascii(), "{a}");
    }

    #[test]
    fn image_patterns_follow_the_plan_architecture() {
        let (owner, pattern, arch) =
            image_query("136693071363/debian-13-{arch}-*", "aarch64").unwrap();
        assert_eq!(
            (owner.as_str(), pattern.as_str(), arch),
            ("136693071363", "debian-13-arm64-*", "arm64")
        );
        let (_, pattern, arch) = image_query("136693071363/debian-13-{arch}-*", "x86_64").unwrap();
        assert_eq!((pattern.as_str(), arch), ("debian-13-amd64-*", "x86_64"));
        assert!(image_query("debian-13", "x86_64").is_err());
    }
}
