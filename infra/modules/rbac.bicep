// Every data-plane grant of the app identity (and of the optional deploying user),
// by built-in role definition id, each on the narrowest scope that works.
// Redis access is an access policy assignment (redis.bicep); Maps in maps.bicep.

@description('Object id of the app\'s user-assigned identity.')
param appPrincipalId string

@description('Optional object id of the deploying user or pipeline; empty: no grants.')
param userPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
param userPrincipalType string = 'User'

param storageAccountName string

@description('Containers the app only reads (index bundles, ads catalog).')
param dataContainerNames array

param vaultName string
param appInsightsName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobService 'blobServices' existing = {
    name: 'default'
  }
}

resource dataContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for containerName in dataContainerNames: {
    parent: storage::blobService
    name: containerName
  }
]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

// --- app identity ------------------------------------------------------------------

// Storage Blob Data Owner on the account: the Functions host (identity-based
// AzureWebJobsStorage) creates and leases its own containers (azure-webjobs-hosts,
// azure-webjobs-secrets), and Flex pulls the package from deployment-package.
// Blob only: an HTTP-only app needs no queue or table access.
resource appBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Blob Data Reader on each data container: states the app's real need on the
// data. Owner above already covers it while runtime and data share one account; this
// grant is what remains if the host storage moves to an account of its own.
resource appBlobReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (containerName, i) in dataContainerNames: {
    name: guid(dataContainers[i].id, appPrincipalId, '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1')
    scope: dataContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1')
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Key Vault Secrets User: resolves the ANTHROPIC_API_KEY reference.
resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Monitoring Metrics Publisher: Entra-authenticated telemetry ingestion
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING), required once local auth is disabled.
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, '3913510d-42f4-4e42-8a64-420c390055eb')
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '3913510d-42f4-4e42-8a64-420c390055eb')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// --- deploying user (optional) -------------------------------------------------------

// Storage Blob Data Contributor: upload index bundles and the ads catalog.
resource userBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(storage.id, userPrincipalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Key Vault Secrets Officer: set new versions of the Anthropic key (rotation).
resource userSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7')
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
