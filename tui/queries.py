"""The GraphQL documents the console sends: one place to see what it asks the API."""

ME = "{ me { email role } }"

OVERVIEW = """{
  platformCounts { users suspendedUsers services failedServices runningDeployments
    activeDeployments failedDeployments }
  servers { id }
  version
}"""

SERVERS = """{
  servers { id provider name status cpuFraction cpus memoryBytes memoryTotalBytes diskBytes
    diskTotalBytes vmCount }
}"""

VM_STATS = """query($vmId: String!) {
  vmStats(vmId: $vmId) {
    samples { time cpuFraction memoryBytes diskBytes networkInBytes networkOutBytes }
  }
}"""

SERVICES = """{
  services(limit: 100) { totalCount items { id name slug status url ownerId } }
  users(limit: 100) { items { id email } }
}"""

SERVICE = """query($id: ID!) {
  service(id: $id) {
    id name status url
    components { name type url image }
    envVars { key component }
    deployments(limit: 10) { id jobId component status message }
  }
}"""

CONSOLE_DEPLOYMENT = """serviceId serviceName ownerEmail containerId updatedAt
    deployment { id jobId component status message error }"""

DEPLOYMENTS = f"""{{
  recentDeployments(limit: 100) {{ items {{ {CONSOLE_DEPLOYMENT} }} }}
}}"""

DEPLOYMENT_ACTIVITY = f"""subscription {{
  deploymentActivity {{ {CONSOLE_DEPLOYMENT} }}
}}"""

CONTAINER_LOGS = """subscription($service: ID!, $container: String!, $tail: Int!) {
  containerLogs(serviceId: $service, containerId: $container, tail: $tail) { stream line }
}"""

USERS = """query($search: String) {
  users(search: $search, limit: 100) {
    totalCount items { id email name role plan suspended }
  }
}"""

AUDIT_LOGS = """{
  auditLogs(limit: 100) {
    items { id actorEmail action targetType targetId outcome createdAt }
  }
}"""

SUSPEND_USER = "mutation($id: ID!) { suspendUser(id: $id) { id suspended } }"
UNSUSPEND_USER = "mutation($id: ID!) { unsuspendUser(id: $id) { id suspended } }"
SET_USER_PLAN = "mutation($id: ID!, $plan: Plan!) { setUserPlan(id: $id, plan: $plan) { id plan } }"
DELETE_USER = "mutation($id: ID!) { deleteUser(id: $id) }"
STOP_CONTAINER = (
    "mutation($service: ID!, $container: String!) "
    "{ stopContainer(serviceId: $service, containerId: $container) }"
)
RESTART_CONTAINER = (
    "mutation($service: ID!, $container: String!) "
    "{ restartContainer(serviceId: $service, containerId: $container) }"
)
DEPLOY_SERVICE = "mutation($service: ID!) { deployService(serviceId: $service) { jobId } }"
ROLLBACK_DEPLOYMENT = "mutation($id: ID!) { rollbackDeployment(deploymentId: $id) { jobId } }"
