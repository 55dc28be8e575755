// Optional Azure Maps account, Entra ID only (no subscription keys): the app calls
// it with its managed identity and sends the account's uniqueId as x-ms-client-id.

param name string

@description('Azure Maps accounts exist in a subset of regions; pick one near the app.')
param location string
param tags object = {}

@description('Object id of the app identity: gets Azure Maps Data Reader.')
param appPrincipalId string

resource account 'Microsoft.Maps/accounts@2023-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'Gen2'
  sku: {
    name: 'G2'
  }
  properties: {
    disableLocalAuth: true
  }
}

// Azure Maps Data Reader
resource mapsDataReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, '423170ca-a8f6-4b0f-8487-9e4eb8f49bfa')
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '423170ca-a8f6-4b0f-8487-9e4eb8f49bfa')
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = account.name
output uniqueId string = account.properties.uniqueId
