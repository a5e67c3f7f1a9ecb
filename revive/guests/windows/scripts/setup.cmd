@echo off
rem revive: first-logon setup of a Windows guest, run once from the payload CD.
rem
rem Finds the CD by its marker file (never by an assumed drive letter), opens
rem port 22 to the VM's private network only, prepares the SMB client for
rem QEMU's share, installs SSH (Cygwin sshd through setup.sh, or Windows
rem OpenSSH from the MSI), reports the SSH host key and powers the machine off.
rem
rem The host reads COM1: "REVIVE-STEP <name>" as each step starts,
rem "REVIVE-HOSTKEY <key>", then "REVIVE-DONE" or "REVIVE-FAILED <step>".
rem Everything else goes to %SystemDrive%\revive-setup.log in the guest.
rem Plain cmd on purpose: Windows XP has no PowerShell.
setlocal
set PAYLOAD=
for %%d in (C D E F G H I J K L M N O P Q R S T U V W X Y Z) do if exist %%d:\REVIVE.TAG set PAYLOAD=%%d:
set STEP=find-payload
if not defined PAYLOAD goto failed
call "%PAYLOAD%\revive\config.cmd"
set LOG=%SystemDrive%\revive-setup.log
>"%LOG%" echo revive setup from %PAYLOAD%

call :step smb-client
net config server /autodisconnect:-1 >>"%LOG%" 2>&1
rem QEMU's smbd serves the share to guests; newer Windows refuses guest
rem logons and (11 24H2) unsigned sessions unless told otherwise.
reg add "HKLM\SYSTEM\CurrentControlSet\Services\LanmanWorkstation\Parameters" /v AllowInsecureGuestAuth /t REG_DWORD /d 1 /f >>"%LOG%" 2>&1
reg add "HKLM\SOFTWARE\Policies\Microsoft\Windows\LanmanWorkstation" /v AllowInsecureGuestAuth /t REG_DWORD /d 1 /f >>"%LOG%" 2>&1
reg add "HKLM\SYSTEM\CurrentControlSet\Services\LanmanWorkstation\Parameters" /v RequireSecuritySignature /t REG_DWORD /d 0 /f >>"%LOG%" 2>&1

call :step password-never-expires
rem A revived copy runs months after the install: its password must not
rem expire (dockur and packer-windows set the same). net accounts works from
rem XP on; wmic marks the account itself where wmic exists.
net accounts /maxpwage:unlimited >>"%LOG%" 2>&1
if errorlevel 1 goto failed
if defined ADMIN_USER wmic useraccount where "name='%ADMIN_USER%'" set PasswordExpires=false >>"%LOG%" 2>&1

call :step license
rem One COM1 line on the licence (an evaluation's expiry), where PowerShell exists.
set PS=%SystemRoot%\System32\WindowsPowerShell\v1.0\powershell.exe
if exist "%PS%" "%PS%" -NoProfile -NonInteractive -ExecutionPolicy Bypass -File "%PAYLOAD%\revive\license.ps1" >COM1 2>>"%LOG%"

call :step firewall
if "%NT5%"=="1" (
  netsh firewall add portopening protocol=TCP port=22 name=revive-ssh mode=ENABLE scope=CUSTOM addresses=10.0.2.0/255.255.255.0 >>"%LOG%" 2>&1
) else (
  netsh advfirewall firewall add rule name=revive-ssh dir=in action=allow protocol=TCP localport=22 remoteip=10.0.2.0/24 >>"%LOG%" 2>&1
)
if errorlevel 1 goto failed

if "%INSTALL_CYGWIN%"=="1" call :cygwin
if errorlevel 1 goto failed
if "%SSH%"=="openssh" call :openssh
if errorlevel 1 goto failed

>COM1 echo REVIVE-DONE
goto poweroff

:failed
>COM1 echo REVIVE-FAILED %STEP%
:poweroff
shutdown -s -f -t 0
exit /b 0

:step
set STEP=%~1
>COM1 echo REVIVE-STEP %STEP%
>>"%LOG%" echo == %STEP%
exit /b 0

:cygwin
call :step cygwin-install
start "" /wait "%PAYLOAD%\cygwin\%CYGSETUP%" --quiet-mode --local-install --local-package-dir "%PAYLOAD%\cygwin" --root "%CYGROOT%" --packages %PACKAGES% --no-shortcuts --no-startmenu --no-desktop
if not exist "%CYGROOT%\bin\bash.exe" exit /b 1
if not "%SSH%"=="cygwin" exit /b 0
call :step cygwin-sshd
rem setup.sh reports its own steps and the host key; PAYLOAD reaches it
rem through the environment.
"%CYGROOT%\bin\bash.exe" --login "%PAYLOAD%/revive/setup.sh" >>"%LOG%" 2>&1
exit /b

:openssh
call :step openssh-install
msiexec /i "%PAYLOAD%\revive\openssh.msi" /qn /norestart >>"%LOG%" 2>&1
if errorlevel 1 exit /b 1
sc config sshd start= auto >>"%LOG%" 2>&1
net start sshd >>"%LOG%" 2>&1
set KEYS=%ProgramData%\ssh
for /l %%i in (1,1,60) do if not exist "%KEYS%\ssh_host_ed25519_key.pub" ping -n 2 127.0.0.1 >nul
if not exist "%KEYS%\ssh_host_ed25519_key.pub" exit /b 1
call :step authorized-keys
copy /y "%PAYLOAD%\revive\authorized_keys" "%KEYS%\administrators_authorized_keys" >>"%LOG%" 2>&1
rem Administrators and SYSTEM only, by SID so localized names do not matter.
icacls "%KEYS%\administrators_authorized_keys" /inheritance:r /grant *S-1-5-32-544:F /grant *S-1-5-18:F >>"%LOG%" 2>&1
if errorlevel 1 exit /b 1
call :step host-key
for /f "usebackq delims=" %%k in ("%KEYS%\ssh_host_ed25519_key.pub") do >COM1 echo REVIVE-HOSTKEY %%k
exit /b 0
