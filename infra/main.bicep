// Search + ads backend on Azure Functions (Flex Consumption, Python 3.11).
//
// Subscription scope: the deployment creates its own resource group, so `azd up`
// and `az deployment sub create` need nothing prepared. Every service is reached
// with one user-assigned managed identity; no keys, passwords or connection
// strings are created, passed between modules or output.
targetScope = 'subscription'

// --- environment --------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Environment name (azd: AZURE_ENV_NAME); seeds the resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource (Flex Consumption and Azure Managed Redis must both be offered there).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Object id of the deploying user or pipeline (azd: AZURE_PRINCIPAL_ID); gets blob upload and secret rotation rights. Empty: none.')
param principalId string = ''

// No @allowed here: a parameters file used without azd passes the literal placeholder
// '${AZURE_PRINCIPAL_TYPE}', which means "not given" (User). rbac.bicep checks the value.
@description('Kind of principalId (azd: AZURE_PRINCIPAL_TYPE, User or ServicePrincipal): User, ServicePrincipal or Group. Empty: User. A Group gets the Blob and Key Vault roles but no Redis access policy (Azure Managed Redis does not accept Entra groups).')
param principalType string = ''

// --- function app scale knobs (see docs/deploy.md for what they cost) ---------------

@allowed([
  512
  2048
  4096
])
@description('Instance memory in MB; CPU and bandwidth grow with it. The index, the ONNX encoder and the worker fit in 2048.')
param instanceMemoryMB int = 2048

// Flex Consumption accepts 40-1000 (Microsoft Learn, "Flex Consumption plan hosting",
// Considerations: "The lowest maximum scale is currently 40"); a few regions in preview
// accept less: lower @minValue here and in modules/functionapp.bicep to use them.
@minValue(40)
@maxValue(1000)
@description('Most instances the app may scale to (40-1000); bounds the bill and the Redis connections (instances x REDIS_MAX_CONNECTIONS).')
param maximumInstanceCount int = 40

@minValue(1)
@description('Always-ready instances for the HTTP group: no cold start for the first requests, billed at the baseline rate even when idle.')
param alwaysReadyInstances int = 1

@minValue(0)
@maxValue(1000)
@description('HTTP requests one instance serves at once before the platform adds one. 0: the value measured for instanceMemoryMB (perInstanceConcurrencyByMemory below, README).')
param httpPerInstanceConcurrency int = 0

@minValue(1)
@maxValue(32)
@description('PYTHON_THREADPOOL_THREAD_COUNT of the Python worker: only sync functions use it; every handler here is async (README).')
param pythonThreadpoolThreadCount int = 1

@description('REQUEST_DEADLINE_S: deadline of a whole request, in seconds.')
param requestDeadlineSeconds string = '8'

// --- data services ---------------------------------------------------------------

@description('Azure Managed Redis SKU (Balanced_B0 is the smallest).')
param redisSkuName string = 'Balanced_B0'

@allowed([
  'Enabled'
  'Disabled'
])
param redisHighAvailability string = 'Enabled'

@allowed([
  'AllKeysLFU'
  'AllKeysLRU'
  'AllKeysRandom'
  'VolatileLRU'
  'VolatileLFU'
  'VolatileTTL'
  'VolatileRandom'
  'NoEviction'
])
param redisEvictionPolicy string = 'AllKeysLRU'

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Deploy an Azure Maps account (Entra ID only) for online geocoding; false: the app geocodes offline.')
param deployMaps bool = false

@description('Region of the Azure Maps account (Maps is offered in fewer regions than the rest).')
param mapsLocation string = 'eastus'

@secure()
@description('Anthropic API key, stored as Key Vault secret anthropic-api-key when given. Empty: the stored secret (if any) is left as it is.')
param anthropicApiKey string = ''

@description('Key Vault purge protection. Once on it cannot be turned off, and a deleted vault keeps its name for the retention period.')
param vaultPurgeProtection bool = true

@minValue(7)
@maxValue(90)
param vaultSoftDeleteRetentionDays int = 90

@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('Disable local (instrumentation-key) auth on Application Insights: only Entra-authenticated telemetry is accepted.')
param appInsightsDisableLocalAuth bool = true

// --- names -------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var rgName = !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
var functionAppName = 'func-api-${resourceToken}'
var planName = 'plan-${resourceToken}'
var identityName = 'id-api-${resourceToken}'
var storageAccountName = 'st${resourceToken}'
var vaultName = 'kv-${resourceToken}'
var redisName = 'redis-${resourceToken}'
var mapsName = 'maps-${resourceToken}'
var logAnalyticsName = 'log-${resourceToken}'
var appInsightsName = 'appi-${resourceToken}'

var deploymentContainerName = 'deployment-package'
var indexContainerName = 'search-index'
var adsContainerName = 'ads-catalog'
var anthropicSecretName = 'anthropic-api-key'

// A parameters file used without azd keeps its ${VAR} placeholders: treat those as unset.
// (Conditions are parenthesised: tests/test_infra.py evaluates them with pycep-parser, which
// binds `? :` tighter than Bicep does.)
var userPrincipalId = ((!empty(principalId)) && (!startsWith(principalId, '$'))) ? principalId : ''
var deployerPrincipalType = (empty(principalType) || startsWith(principalType, '$')) ? 'User' : principalType
// Azure Managed Redis access policy assignments take users, service principals and managed
// identities, not Entra groups: a Group deployer gets no Redis data access (docs/deploy.md).
var redisUserPrincipalId = (deployerPrincipalType == 'Group') ? '' : userPrincipalId
var anthropicKeyGiven = (!empty(anthropicApiKey)) && (!startsWith(anthropicApiKey, '$'))

// HTTP requests in flight per instance before Flex adds an instance, by instance size
// (512 MB: 0.25 vCPU, 2048 MB: 1 vCPU, 4096 MB: 2 vCPU). From the one-core concurrency sweep
// (bench/load.py --sweep, README "Scaling and host settings"); tests/test_infra.py keeps the
// README table and this map in step.
var perInstanceConcurrencyByMemory = {
  '512': 2
  '2048': 8
  '4096': 16
}
var perInstanceConcurrency = (httpPerInstanceConcurrency > 0) ? httpPerInstanceConcurrency : perInstanceConcurrencyByMemory[string(instanceMemoryMB)]

// --- resources -----------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: rgName
  location: location
  tags: tags
}

module appIdentity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'app-identity'
  scope: rg
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.12.0' = {
  name: 'log-analytics'
  scope: rg
  params: {
    name: logAnalyticsName
    location: location
    tags: tags
    dataRetention: logRetentionDays
  }
}

module appInsights 'br/public:avm/res/insights/component:0.6.0' = {
  name: 'app-insights'
  scope: rg
  params: {
    name: appInsightsName
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    kind: 'web'
    applicationType: 'web'
    disableLocalAuth: appInsightsDisableLocalAuth
  }
}

module storage 'br/public:avm/res/storage/storage-account:0.29.0' = {
  name: 'storage'
  scope: rg
  params: {
    name: storageAccountName
    location: location
    tags: tags
    kind: 'StorageV2'
    skuName: storageSkuName
    // Entra ID only: no account keys, no SAS, no anonymous blobs.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    blobServices: {
      containerDeleteRetentionPolicyEnabled: true
      containerDeleteRetentionPolicyDays: 7
      deleteRetentionPolicyEnabled: true
      deleteRetentionPolicyDays: 7
      containers: [
        {
          name: deploymentContainerName
          publicAccess: 'None'
        }
        {
          name: indexContainerName
          publicAccess: 'None'
        }
        {
          name: adsContainerName
          publicAccess: 'None'
        }
      ]
    }
  }
}

module vault 'br/public:avm/res/key-vault/vault:0.13.3' = {
  name: 'vault'
  scope: rg
  params: {
    name: vaultName
    location: location
    tags: tags
    sku: 'standard'
    enableRbacAuthorization: true
    enablePurgeProtection: vaultPurgeProtection
    softDeleteRetentionInDays: vaultSoftDeleteRetentionDays
    publicNetworkAccess: 'Enabled'
  }
}

module anthropicSecret 'modules/kv-secret.bicep' = if (anthropicKeyGiven) {
  name: 'anthropic-secret'
  scope: rg
  params: {
    vaultName: vault.outputs.name
    secretName: anthropicSecretName
    secretValue: anthropicApiKey
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  scope: rg
  params: {
    name: redisName
    location: location
    tags: tags
    skuName: redisSkuName
    highAvailability: redisHighAvailability
    evictionPolicy: redisEvictionPolicy
    appPrincipalId: appIdentity.outputs.principalId
    userPrincipalId: redisUserPrincipalId
  }
}

module maps 'modules/maps.bicep' = if (deployMaps) {
  name: 'maps'
  scope: rg
  params: {
    name: mapsName
    location: mapsLocation
    tags: tags
    appPrincipalId: appIdentity.outputs.principalId
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    appPrincipalId: appIdentity.outputs.principalId
    userPrincipalId: userPrincipalId
    userPrincipalType: deployerPrincipalType
    storageAccountName: storage.outputs.name
    dataContainerNames: [
      indexContainerName
      adsContainerName
    ]
    vaultName: vault.outputs.name
    appInsightsName: appInsights.outputs.name
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: planName
    location: location
    tags: tags
    identityResourceId: appIdentity.outputs.resourceId
    identityClientId: appIdentity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    indexContainerName: indexContainerName
    adsContainerName: adsContainerName
    appInsightsName: appInsights.outputs.name
    vaultName: vault.outputs.name
    anthropicSecretName: anthropicSecretName
    redisHostName: redis.outputs.hostName
    redisPort: redis.outputs.port
    mapsClientId: deployMaps ? maps!.outputs.uniqueId : ''
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyInstances: alwaysReadyInstances
    httpPerInstanceConcurrency: perInstanceConcurrency
    pythonThreadpoolThreadCount: pythonThreadpoolThreadCount
    requestDeadlineSeconds: requestDeadlineSeconds
  }
  // Start the app only once it may read its package, host state, secret and cache.
  dependsOn: [
    rbac
    anthropicSecret
  ]
}

// --- outputs: names and endpoints only (azd writes them to .azure/<env>/.env) ------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_BASE_URL string = 'https://${functionApp.outputs.defaultHostName}/api'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output BLOB_ACCOUNT_URL string = storage.outputs.primaryBlobEndpoint
output DEPLOYMENT_CONTAINER string = deploymentContainerName
output INDEX_CONTAINER string = indexContainerName
output ADS_CONTAINER string = adsContainerName
output REDIS_HOST string = redis.outputs.hostName
output APP_IDENTITY_CLIENT_ID string = appIdentity.outputs.clientId
output VAULT_NAME string = vault.outputs.name
