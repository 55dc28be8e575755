// Azure Managed Redis (Microsoft.Cache/redisEnterprise) with Entra ID only.
// Plain resources: access policy assignments must be pinned to the app identity here.
// API 2025-04-01 (GA) carries `accessKeysAuthentication` on the database and the
// `databases/accessPolicyAssignments` child (checked against the REST spec
// redisenterprise/stable/2025-04-01).

param name string
param location string = resourceGroup().location
param tags object = {}

@description('Azure Managed Redis SKU, e.g. Balanced_B0 (smallest), Balanced_B1, MemoryOptimized_M10.')
param skuName string = 'Balanced_B0'

@allowed([
  'Enabled'
  'Disabled'
])
@description('Replication inside the cluster; Disabled halves the price and drops the SLA. Chosen at creation: an existing cache can go from Disabled to Enabled, never back.')
param highAvailability string = 'Enabled'

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
@description('What Redis drops when memory is full. It is a cache: every key may go.')
param evictionPolicy string = 'AllKeysLRU'

@description('Object (principal) id of the app\'s managed identity: gets the default data access policy.')
param appPrincipalId string

// Access policy assignments accept users, service principals and managed identities;
// Microsoft Entra groups are not supported (Microsoft Learn, "Use Microsoft Entra ID for
// cache authentication", limitations). main.bicep passes '' for a Group deployer.
@description('Optional object id of a user or service principal (never a group) that also gets data access (debugging); empty: none.')
param userPrincipalId string = ''

resource cluster 'Microsoft.Cache/redisEnterprise@2025-04-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: highAvailability
  }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-04-01' = {
  parent: cluster
  name: 'default'
  properties: {
    // TLS only, on the Azure Managed Redis port.
    clientProtocol: 'Encrypted'
    port: 10000
    // EnterpriseCluster: one endpoint, the proxy routes keys, so the app's plain
    // (non-cluster) redis-py asyncio client works unchanged. OSSCluster would be a
    // little faster on big SKUs but needs a cluster-aware client. Create-time only.
    clusteringPolicy: 'EnterpriseCluster'
    evictionPolicy: evictionPolicy
    // Entra ID only: no access keys to leak or rotate.
    accessKeysAuthentication: 'Disabled'
    // A cache: nothing to persist.
    persistence: {
      aofEnabled: false
      rdbEnabled: false
    }
  }
}

// Names must match ^[A-Za-z0-9]{1,60}$ (no dashes).
resource appAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-04-01' = {
  parent: database
  name: 'app${uniqueString(appPrincipalId)}'
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: appPrincipalId
    }
  }
}

// Assignments on one database are applied one at a time.
resource userAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-04-01' = if (!empty(userPrincipalId)) {
  parent: database
  name: 'user${uniqueString(userPrincipalId)}'
  properties: {
    accessPolicyName: 'default'
    user: {
      objectId: userPrincipalId
    }
  }
  dependsOn: [
    appAccess
  ]
}

output name string = cluster.name
output hostName string = cluster.properties.hostName
output port int = database.properties.port
