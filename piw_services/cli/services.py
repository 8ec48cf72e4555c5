"""The master services, by name: a module of its own so tests and tools can read the list
without importing piw-master (which monkey-patches the process for eventlet)."""

#: (name, "module:Class") of every master service that exists; later services add themselves.
MASTER_SERVICES = {
    "reorderer": "piw_services.reorderer.service:ReordererService",
    "upstream": "piw_services.upstream.service:UpstreamService",
    "file_manager": "piw_services.file_manager.service:FileManagerService",
    "build_dispatch": "piw_services.build_dispatch.service:BuildDispatchService",
    "index": "piw_services.index.service:IndexService",
    "web": "piw_services.web.service:WebService",
    "admin": "piw_services.admin.service:AdminService",
    "stats": "piw_services.stats.service:StatsService",
}
