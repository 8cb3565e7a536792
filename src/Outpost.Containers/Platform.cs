// Containers are Linux's: namespaces, cgroups and runc. Nothing here runs elsewhere.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
