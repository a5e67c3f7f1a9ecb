# revive: the installed Windows' own licence, one line for the host to read
# on COM1 (setup.cmd redirects it there): REVIVE-LICENSE <minutes of grace
# left> <LicenseStatus> <Description>. An evaluation's Description names
# its TIMEBASED_EVAL channel; when its grace runs out Windows shuts itself
# down every hour, so the host remembers when that is. Windows PowerShell
# 2.0 and later (7 / Server 2008 R2 on): Get-WmiObject.
$os = "55c92734-d682-4d71-983e-d6ec3f16059f"
$p = Get-WmiObject -Class SoftwareLicensingProduct `
    -Filter "PartialProductKey IS NOT NULL AND ApplicationID='$os'" |
    Select-Object -First 1
if ($p) { "REVIVE-LICENSE $($p.GracePeriodRemaining) $($p.LicenseStatus) $($p.Description)" }
