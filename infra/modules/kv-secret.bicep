// One Key Vault secret, written only when a value is supplied at deployment time
// (main.bicep decides). Redeploying without a value leaves the stored one alone.
// No outputs: the app settings build the reference from the vault URI themselves.

param vaultName string
param secretName string

@secure()
param secretValue string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: secretValue
    contentType: 'text/plain'
  }
}
