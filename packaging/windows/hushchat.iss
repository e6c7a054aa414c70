; Inno Setup script of the Windows installer (built by .github/workflows/release.yml):
;   iscc /DAppVersion=0.1.0 /DSourceDir=C:\...\dist\Hushchat /DOutputDir=C:\...\dist packaging\windows\hushchat.iss
; SourceDir is the PyInstaller onedir from `python packaging/bootstrap.py package`.
; Per-user install by default (no administrator rights needed); a Start-menu entry, an
; optional desktop icon and an uninstaller. The vault and chats in the user's profile are
; never removed by the uninstaller (they are the user's data).

#ifndef AppVersion
  #error Pass /DAppVersion=X.Y.Z (the pyproject version)
#endif
#ifndef SourceDir
  #error Pass /DSourceDir=<the PyInstaller onedir>
#endif
#ifndef OutputDir
  #define OutputDir "."
#endif
#ifndef AppExe
  #define AppExe "Hushchat.exe"
#endif

[Setup]
; A fixed AppId: upgrades replace the installed version instead of installing beside it.
AppId={{6D0C2B7E-3F5A-4C1B-9E8D-2A4F7B1C9E30}
AppName=Hushchat
AppVersion={#AppVersion}
AppVerName=Hushchat {#AppVersion}
AppPublisher=Hushchat developers
DefaultDirName={autopf}\Hushchat
DefaultGroupName=Hushchat
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=hushchat-{#AppVersion}-windows-x64-setup
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName=Hushchat {#AppVersion}
CloseApplications=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Hushchat"; Filename: "{app}\{#AppExe}"
Name: "{group}\Uninstall Hushchat"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Hushchat"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,Hushchat}"; Flags: nowait postinstall skipifsilent
