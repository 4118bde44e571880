import ProfileJobsGateway
import UpstreamSimulators

print("profile-jobs-gateway")
