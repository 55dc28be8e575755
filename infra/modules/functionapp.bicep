// Function App on the Flex Consumption plan (plain resources: the Flex-only
// `functionAppConfig` block is what this module exists for).
//
// Flex Consumption rules that shape this file:
// - one app per plan; the plan is FC1 / FlexConsumption and Linux (`reserved: true`);
// - the runtime lives in `functionAppConfig.runtime`: FUNCTIONS_WORKER_RUNTIME and
//   FUNCTIONS_EXTENSION_VERSION are not allowed as app settings;
// - the code package is pulled from a blob container, here with the app's
//   user-assigned identity (no connection string, no shared key).

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

param location string = resourceGroup().location
param tags object = {}

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityResourceId string

@description('Client id of that identity (DefaultAzureCredential, AzureWebJobsStorage, App Insights).')
param identityClientId string

@description('Storage account holding the deployment package, the host state and the data containers.')
param storageAccountName string

param deploymentContainerName string
param indexContainerName string
param adsContainerName string

@description('Application Insights component name (its connection string is read here, never passed around).')
param appInsightsName string

@description('Key Vault holding the anthropic-api-key secret.')
param vaultName string

@description('Name of the Key Vault secret referenced by ANTHROPIC_API_KEY.')
param anthropicSecretName string

@description('Azure Managed Redis host name.')
param redisHostName string

@description('Azure Managed Redis TLS port.')
param redisPort int = 10000

@description('Azure Maps account unique id (x-ms-client-id); empty when Maps is not deployed.')
param mapsClientId string = ''

@allowed([
  512
  2048
  4096
])
@description('Instance memory in MB; CPU and network bandwidth are allocated in proportion.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Upper bound of the scale-out, 40-1000 on Flex Consumption (cost and Redis connection budget guard).')
param maximumInstanceCount int = 40

@minValue(1)
@description('Always-ready instances of the HTTP group (billed at the baseline rate even when idle).')
param alwaysReadyInstances int = 1

@minValue(1)
@maxValue(1000)
@description('Concurrent HTTP invocations one instance takes before the platform scales out.')
param httpPerInstanceConcurrency int = 16

@minValue(1)
@maxValue(32)
@description('PYTHON_THREADPOOL_THREAD_COUNT: threads of the worker for sync code.')
param pythonThreadpoolThreadCount int = 1

@description('REQUEST_DEADLINE_S: deadline of a whole request in seconds.')
param requestDeadlineSeconds string = '8'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityResourceId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    // Key Vault references in app settings resolve with this identity.
    keyVaultReferenceIdentity: identityResourceId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityResourceId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: [
          {
            name: 'http'
            instanceCount: alwaysReadyInstances
          }
        ]
        triggers: {
          http: {
            // The handlers are async and I/O-bound (Blob, Redis, Claude, Maps): one
            // instance overlaps many requests while CPU work (encoding, scoring) runs
            // on SEARCH_WORKERS threads. The Python default of 1 would scale out one
            // instance per in-flight request. main.bicep picks the value per instance
            // size from the README's one-core concurrency sweep.
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

  // The whole app-settings set (this resource replaces it on every deployment).
  // Names on the app side come from core/settings.py. FUNCTION_KEYS is not set:
  // in Azure the Functions host checks its own keys.
  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // Host storage through the identity (no connection string, shared keys are off).
      AzureWebJobsStorage__accountName: storage.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId

      // Not a secret per Microsoft; with local auth disabled on the component,
      // ingestion also needs the Entra token described by the next setting.
      APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'

      BLOB_ACCOUNT_URL: storage.properties.primaryEndpoints.blob
      AZURE_CLIENT_ID: identityClientId
      INDEX_CONTAINER: indexContainerName
      ADS_CONTAINER: adsContainerName

      // Empty REDIS_URL + REDIS_HOST: TLS to Azure Managed Redis with an Entra token.
      REDIS_HOST: redisHostName
      REDIS_PORT: string(redisPort)
      REDIS_URL: ''

      // Versionless reference: a new secret version is picked up on restart or
      // within the platform's reference refresh (about 24 h).
      ANTHROPIC_API_KEY: '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${anthropicSecretName})'

      AZURE_MAPS_CLIENT_ID: mapsClientId
      REQUEST_DEADLINE_S: requestDeadlineSeconds
      PYTHON_THREADPOOL_THREAD_COUNT: string(pythonThreadpoolThreadCount)
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
