; Inno Setup 6 script for the Windows installer. packaging/build.py windows passes the /D values;
; untested here (no Windows machine): built by .github/workflows/installers.yml on windows-latest.
;   iscc /DAppVersion=0.1.0 /DBundleDir=...\reid-desktop /DOutputDir=... /DOutputBase=... /DIconFile=... reid-desktop.iss

#ifndef AppVersion
  #error Pass /DAppVersion=... (packaging/build.py does)
#endif
#ifndef BundleDir
  #error Pass /DBundleDir=... (the PyInstaller one-folder bundle)
#endif

[Setup]
; Fixed for the life of the product: Windows finds earlier installs (upgrade, uninstall) by it.
AppId={{6B1E8C52-93F4-4C1B-9E0B-2D7A5F3C8E41}
AppName=reid-desktop
AppVersion={#AppVersion}
AppVerName=reid-desktop {#AppVersion}
AppPublisher=reid-desktop developers
VersionInfoVersion={#AppVersion}
DefaultDirName={autopf}\reid-desktop
DefaultGroupName=reid-desktop
DisableProgramGroupPage=yes
; Install for all users (administrator) or just this user, as the operator chooses.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename={#OutputBase}
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\reid-desktop.exe
UninstallDisplayName=reid-desktop
; The bundle is large (torch); LZMA2 without solid compression keeps the build and the install fast.
Compression=lzma2/normal
SolidCompression=no
; Installers over 2 GB (the GPU variant) need disk spanning: setup.exe plus .bin files side by side.
DiskSpanning=yes
DiskSliceSize=max
WizardStyle=modern
ChangesAssociations=no
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\reid-desktop"; Filename: "{app}\reid-desktop.exe"; Comment: "Follow people across cameras"
Name: "{autodesktop}\reid-desktop"; Filename: "{app}\reid-desktop.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\reid-desktop.exe"; Description: "{cm:LaunchProgram,reid-desktop}"; Flags: nowait postinstall skipifsilent

; The uninstaller removes what it installed; the operator's data (%LOCALAPPDATA%\reid-desktop) stays.
