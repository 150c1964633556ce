<#
.SYNOPSIS
    Export the Exchange Online mail-flow configuration that mailflow-auditor reads.

.DESCRIPTION
    Run this after Connect-ExchangeOnline (ExchangeOnlineManagement v3), in Windows PowerShell
    5.1 or PowerShell 7. It runs read-only Get-* cmdlets and one audit log search
    (Search-UnifiedAuditLog) only, and changes nothing in the tenant.

    It writes one <Cmdlet>.json file per cmdlet (ConvertTo-Json -Depth 10, UTF-8 without a byte
    order mark) and export.json: when and where it ran, the module version, and for every
    cmdlet its status (ok / partial / missing / denied / error) with the error text, so that
    a cmdlet your roles do not allow is reported as denied instead of silently missing.

    Enum values are written as their names on both PowerShell versions (Windows PowerShell 5.1
    would otherwise write numbers, and ConvertTo-Json there has no -EnumsAsStrings).

    Hand the whole folder to your auditor, or run: mailflow-audit audit <folder>

.PARAMETER OutputFolder
    Folder to create and fill (default: .\mailflow-export-<date>). It must be new or empty.

.PARAMETER SkipInboxRules
    Do not read every mailbox's inbox rules (one Get-InboxRule call per mailbox).

.PARAMETER AuditDays
    Days of the unified audit log to search for Exchange admin operations (who changed a
    connector, rule or policy, when and from where), written to Search-UnifiedAuditLog.json.
    Default 30; 0 skips the search. Needs the View-Only Audit Logs or Audit Logs role.

.EXAMPLE
    Connect-ExchangeOnline -UserPrincipalName admin@contoso.com
    .\Export-MailflowEvidence.ps1 -OutputFolder .\contoso-export
#>
[CmdletBinding()]
param(
    [string] $OutputFolder = (Join-Path -Path (Get-Location).Path -ChildPath ('mailflow-export-' + (Get-Date -Format 'yyyyMMdd-HHmmss'))),
    [switch] $SkipInboxRules,
    [ValidateRange(0, 180)] [int] $AuditDays = 30
)

$ErrorActionPreference = 'Stop'
$ScriptVersion = '1'
$Utf8NoBom = New-Object -TypeName System.Text.UTF8Encoding -ArgumentList $false

# File name (the export-folder contract), cmdlet and parameters of every evidence item.
$Items = @(
    @{ File = 'Get-TransportRule'; Cmdlet = 'Get-TransportRule'; Parameters = @{ ResultSize = 'Unlimited' } }
    @{ File = 'Get-InboundConnector'; Cmdlet = 'Get-InboundConnector'; Parameters = @{} }
    @{ File = 'Get-OutboundConnector'; Cmdlet = 'Get-OutboundConnector'; Parameters = @{ ResultSize = 'Unlimited' } }
    @{ File = 'Get-AcceptedDomain'; Cmdlet = 'Get-AcceptedDomain'; Parameters = @{} }
    @{ File = 'Get-RemoteDomain'; Cmdlet = 'Get-RemoteDomain'; Parameters = @{} }
    @{ File = 'Get-OrganizationConfig'; Cmdlet = 'Get-OrganizationConfig'; Parameters = @{} }
    @{ File = 'Get-TransportConfig'; Cmdlet = 'Get-TransportConfig'; Parameters = @{} }
    @{ File = 'Get-HostedConnectionFilterPolicy'; Cmdlet = 'Get-HostedConnectionFilterPolicy'; Parameters = @{} }
    @{ File = 'Get-HostedContentFilterPolicy'; Cmdlet = 'Get-HostedContentFilterPolicy'; Parameters = @{} }
    @{ File = 'Get-HostedOutboundSpamFilterPolicy'; Cmdlet = 'Get-HostedOutboundSpamFilterPolicy'; Parameters = @{} }
    @{ File = 'Get-JournalRule'; Cmdlet = 'Get-JournalRule'; Parameters = @{} }
    @{ File = 'Get-DkimSigningConfig'; Cmdlet = 'Get-DkimSigningConfig'; Parameters = @{} }
    @{ File = 'Get-TenantAllowBlockListItems-Sender'; Cmdlet = 'Get-TenantAllowBlockListItems'; Parameters = @{ ListType = 'Sender' } }
    @{ File = 'Get-TenantAllowBlockListItems-Url'; Cmdlet = 'Get-TenantAllowBlockListItems'; Parameters = @{ ListType = 'Url' } }
    @{ File = 'Get-TenantAllowBlockListItems-FileHash'; Cmdlet = 'Get-TenantAllowBlockListItems'; Parameters = @{ ListType = 'FileHash' } }
    @{ File = 'Get-TenantAllowBlockListItems-IP'; Cmdlet = 'Get-TenantAllowBlockListItems'; Parameters = @{ ListType = 'IP' } }
    @{ File = 'Get-TenantAllowBlockListSpoofItems'; Cmdlet = 'Get-TenantAllowBlockListSpoofItems'; Parameters = @{} }
    @{ File = 'Get-Mailbox'; Cmdlet = 'Get-Mailbox'; Parameters = @{ ResultSize = 'Unlimited' } }
    @{ File = 'Get-InboxRule'; Cmdlet = 'Get-InboxRule'; Parameters = @{ ResultSize = 'Unlimited' }; PerMailbox = $true }
    @{ File = 'Get-ManagementRoleAssignment'; Cmdlet = 'Get-ManagementRoleAssignment'; Parameters = @{} }
    @{ File = 'Get-ApplicationAccessPolicy'; Cmdlet = 'Get-ApplicationAccessPolicy'; Parameters = @{} }
    @{ File = 'Get-ArcConfig'; Cmdlet = 'Get-ArcConfig'; Parameters = @{} }
    @{ File = 'Get-PhishSimOverridePolicy'; Cmdlet = 'Get-PhishSimOverridePolicy'; Parameters = @{} }
    @{ File = 'Get-ExoPhishSimOverrideRule'; Cmdlet = 'Get-ExoPhishSimOverrideRule'; Parameters = @{} }
    @{ File = 'Get-SecOpsOverridePolicy'; Cmdlet = 'Get-SecOpsOverridePolicy'; Parameters = @{} }
    @{ File = 'Get-ExoSecOpsOverrideRule'; Cmdlet = 'Get-ExoSecOpsOverrideRule'; Parameters = @{} }
    @{ File = 'Get-AdminAuditLogConfig'; Cmdlet = 'Get-AdminAuditLogConfig'; Parameters = @{} }
    @{ File = 'Get-MailboxAuditBypassAssociation'; Cmdlet = 'Get-MailboxAuditBypassAssociation'; Parameters = @{ ResultSize = 'Unlimited' } }
)

function ConvertTo-ExportObject {
    # Enum values as their names; everything else exactly as the cmdlet returned it.
    param($InputObject)
    $copy = [ordered]@{}
    foreach ($property in $InputObject.PSObject.Properties) {
        $value = $property.Value
        if ($value -is [System.Enum]) { $value = $value.ToString() }
        $copy[$property.Name] = $value
    }
    [pscustomobject]$copy
}

function Get-FailureStatus {
    # denied: a role is missing; missing: the object does not exist; error: anything else.
    param($ErrorRecord)
    $text = [string]$ErrorRecord.Exception.Message
    $kind = [string]$ErrorRecord.Exception.GetType().FullName + ' ' + [string]$ErrorRecord.FullyQualifiedErrorId
    if ($kind -match 'CommandNotFound' -or $text -match 'Access ?Denied|UnauthorizedAccess|Forbidden|permission|is not within|isn''t within|not allowed|\b40[13]\b') {
        return 'denied'
    }
    if ($kind -match 'ManagementObjectNotFound' -or $text -match 'couldn''t be found') {
        return 'missing'
    }
    return 'error'
}

function Write-ExportFile {
    param([string] $Name, $Objects)
    $json = ConvertTo-Json -InputObject @($Objects) -Depth 10
    [System.IO.File]::WriteAllText((Join-Path -Path $OutputFolder -ChildPath ($Name + '.json')), $json, $Utf8NoBom)
}

$connection = $null
if (Get-Command -Name 'Get-ConnectionInformation' -ErrorAction SilentlyContinue) {
    $connection = @(Get-ConnectionInformation | Where-Object { $_.State -eq 'Connected' }) | Select-Object -First 1
}
if ($null -eq $connection) {
    throw 'Not connected to Exchange Online: run Connect-ExchangeOnline (ExchangeOnlineManagement v3) first.'
}
if ((Test-Path -LiteralPath $OutputFolder) -and @(Get-ChildItem -LiteralPath $OutputFolder -Force).Count -gt 0) {
    throw "The folder $OutputFolder is not empty: choose a new folder."
}
$null = New-Item -ItemType Directory -Path $OutputFolder -Force
$OutputFolder = (Resolve-Path -LiteralPath $OutputFolder).ProviderPath

$module = Get-Module -Name ExchangeOnlineManagement | Sort-Object -Property Version -Descending | Select-Object -First 1
$manifest = [ordered]@{
    tool           = 'mailflow-audit export-script'
    script_version = $ScriptVersion
    collected_at   = (Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')
    tenant         = [string]$connection.TenantID
    organization   = [string]$connection.Organization
    user           = [string]$connection.UserPrincipalName
    powershell     = $PSVersionTable.PSVersion.ToString()
    edition        = [string]$PSVersionTable.PSEdition
    module_version = $(if ($module) { $module.Version.ToString() } else { $null })
    cmdlets        = [ordered]@{}
}

$mailboxes = $null
$index = 0
foreach ($item in $Items) {
    $index++
    Write-Progress -Activity 'Exporting mail-flow evidence' -Status $item.File -PercentComplete (100 * $index / $Items.Count)
    $entry = [ordered]@{ status = 'ok'; error = $null; objects = 0; warnings = @() }
    $parameters = $item.Parameters
    if (-not (Get-Command -Name $item.Cmdlet -ErrorAction SilentlyContinue)) {
        $entry.status = 'denied'
        $entry.error = "$($item.Cmdlet) is not available in this session: the roles of the account that connected do not grant it"
    }
    elseif ($item.ContainsKey('PerMailbox')) {
        if ($SkipInboxRules) {
            $entry.status = 'missing'
            $entry.error = 'not collected (-SkipInboxRules)'
        }
        elseif ($null -eq $mailboxes) {
            $entry.status = 'missing'
            $entry.error = 'needs the mailbox list, which Get-Mailbox did not return'
        }
        else {
            $rules = New-Object -TypeName System.Collections.ArrayList
            $failed = 0
            foreach ($mailbox in $mailboxes) {
                try {
                    foreach ($rule in @(Get-InboxRule -Mailbox $mailbox.ExternalDirectoryObjectId @parameters -ErrorAction Stop)) {
                        $null = $rules.Add((ConvertTo-ExportObject -InputObject $rule))
                    }
                }
                catch {
                    $status = Get-FailureStatus -ErrorRecord $_
                    if ($status -eq 'denied') {
                        $entry.status = 'denied'
                        $entry.error = "Get-InboxRule: $($_.Exception.Message)"
                        break
                    }
                    if ($status -eq 'missing') {
                        $entry.warnings += "mailbox $($mailbox.ExternalDirectoryObjectId) disappeared before its rules were read"
                        continue
                    }
                    $failed++
                    if ($null -eq $entry.error) { $entry.error = "Get-InboxRule -Mailbox $($mailbox.ExternalDirectoryObjectId): $($_.Exception.Message)" }
                }
            }
            if ($entry.status -ne 'denied') {
                if ($failed -gt 0) {
                    $entry.status = 'partial'
                    $entry.error = "the rules of $failed of $(@($mailboxes).Count) mailboxes could not be read (first: $($entry.error))"
                }
                Write-ExportFile -Name $item.File -Objects $rules
                $entry.objects = $rules.Count
            }
        }
    }
    else {
        try {
            $results = @(& $item.Cmdlet @parameters -ErrorAction Stop -WarningVariable cmdletWarnings -WarningAction SilentlyContinue)
            $converted = @($results | ForEach-Object { ConvertTo-ExportObject -InputObject $_ })
            Write-ExportFile -Name $item.File -Objects $converted
            $entry.objects = $converted.Count
            foreach ($warning in @($cmdletWarnings)) {
                if ([string]$warning -match 'more results') {
                    $entry.status = 'partial'
                    $entry.error = [string]$warning
                }
            }
            if ($item.Cmdlet -eq 'Get-Mailbox') { $mailboxes = $results }
        }
        catch {
            $entry.status = Get-FailureStatus -ErrorRecord $_
            $entry.error = [string]$_.Exception.Message
        }
    }
    $manifest.cmdlets[$item.File] = $entry
    Write-Host ('  {0,-8} {1}: {2}' -f $entry.status, $item.File, $(if ($entry.error) { $entry.error } else { "$($entry.objects) objects" }))
}
Write-Progress -Activity 'Exporting mail-flow evidence' -Completed

# The unified audit log's Exchange admin operations, read (Search-UnifiedAuditLog only searches)
# through one search session: SessionId with ReturnLargeSet pages through up to 50,000 records,
# at most 5,000 per call, unsorted and sometimes repeated (kept once, by Identity). ResultCount is
# the number of hits over all pages; a session that cannot return them all is recorded partial.
$AuditFile = 'Search-UnifiedAuditLog'
$AuditPageSize = 5000
$AuditSessionCap = 50000
$entry = [ordered]@{ status = 'ok'; error = $null; objects = 0; warnings = @() }
if ($AuditDays -eq 0) {
    $entry.status = 'missing'
    $entry.error = 'not collected (-AuditDays 0)'
}
elseif (-not (Get-Command -Name 'Search-UnifiedAuditLog' -ErrorAction SilentlyContinue)) {
    $entry.status = 'denied'
    $entry.error = 'Search-UnifiedAuditLog is not available in this session: the account needs the View-Only Audit Logs or Audit Logs role'
}
else {
    Write-Progress -Activity 'Searching the unified audit log' -Status "ExchangeAdmin, last $AuditDays days"
    $auditEnd = (Get-Date).ToUniversalTime()
    $auditStart = $auditEnd.AddDays(-$AuditDays)
    $sessionId = 'mailflow-export-' + (Get-Date -Format 'yyyyMMddHHmmssfff')
    $records = New-Object -TypeName System.Collections.ArrayList
    $seen = @{}
    $total = 0
    $maxPages = [int]($AuditSessionCap / $AuditPageSize) + 1
    try {
        for ($page = 1; $page -le $maxPages; $page++) {
            $batch = @(Search-UnifiedAuditLog -StartDate $auditStart -EndDate $auditEnd -RecordType ExchangeAdmin -SessionId $sessionId -SessionCommand ReturnLargeSet -ResultSize $AuditPageSize -ErrorAction Stop)
            if ($batch.Count -eq 0) { break }
            if ([int]$batch[0].ResultIndex -eq -1) {
                $entry.status = 'partial'
                $entry.error = 'the audit log search returned an incomplete page (ResultIndex -1); run the export again'
                break
            }
            $total = [int]$batch[0].ResultCount
            foreach ($record in $batch) {
                if (-not $seen.ContainsKey([string]$record.Identity)) {
                    $seen[[string]$record.Identity] = $true
                    $null = $records.Add((ConvertTo-ExportObject -InputObject $record))
                }
            }
            if ($records.Count -ge $total -or $records.Count -ge $AuditSessionCap) { break }
        }
        if ($entry.status -eq 'ok' -and $records.Count -lt $total) {
            $entry.status = 'partial'
            $entry.error = "the search found $total ExchangeAdmin records and one search session returns at most $AuditSessionCap, so $($records.Count) were exported: run it again with a smaller -AuditDays"
        }
        Write-ExportFile -Name $AuditFile -Objects $records
        $entry.objects = $records.Count
    }
    catch {
        $entry.status = Get-FailureStatus -ErrorRecord $_
        $entry.error = [string]$_.Exception.Message
    }
    Write-Progress -Activity 'Searching the unified audit log' -Completed
}
$manifest.audit_days = $AuditDays
$manifest.cmdlets[$AuditFile] = $entry
Write-Host ('  {0,-8} {1}: {2}' -f $entry.status, $AuditFile, $(if ($entry.error) { $entry.error } else { "$($entry.objects) records" }))

$json = ConvertTo-Json -InputObject $manifest -Depth 10
[System.IO.File]::WriteAllText((Join-Path -Path $OutputFolder -ChildPath 'export.json'), $json, $Utf8NoBom)
Write-Host "Export written to $OutputFolder"
