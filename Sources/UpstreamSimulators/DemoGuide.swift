import ProfileJobsGateway

/// What `demo` prints: where things listen and calls to paste.
public enum DemoGuide {
    public static func text(host: String, port: UInt16, azurePort: UInt16, awsPort: UInt16, auditFile: String)
        -> String
    {
        let host = urlHost(host)
        let root = "http://\(host):\(port)"
        let base = "\(root)/v1/system/jobs"
        let auth = "-H 'Authorization: Bearer demo-service-token' -H 'x-api-key: demo-client'"
        return """
            Profile Jobs Gateway demo
              gateway            \(base)
              simulated Azure    http://\(host):\(azurePort)  (organization \(DemoEnvironment.azureOrg))
              simulated AWS      http://\(host):\(awsPort)  (organization \(DemoEnvironment.awsOrg))
              audit trail        \(auditFile)
            Jobs move from QUEUED to RUNNING after 2 s and to SUCCEEDED after 10 s. Stop with Ctrl-C.

            Try, in bash or zsh (set ORG to either organization):
              ORG=\(DemoEnvironment.azureOrg)
              curl -s \(auth) -H "x-gw-ims-org-id: $ORG" \(base)
              curl -s \(auth) -H "x-gw-ims-org-id: $ORG" -H 'Content-Type: application/json' \\
                   -d '{"datasetId": "5c802d3cd83fc114b741c4b5"}' \(base)
              curl -s \(auth) -H "x-gw-ims-org-id: $ORG" -H 'Content-Type: application/json' \\
                   -d '{"datasetId": "66a92c5910df2d1767de13f3", "batchId": "01JFSYFDFW9JAAEKHX672JMPSB"}' \(base)
              curl -s \(auth) -H "x-gw-ims-org-id: $ORG" '\(base)?limit=1'        # then ?cursor=<page.next>
              ID=paste-an-id-from-an-answer-above
              curl -s \(auth) -H "x-gw-ims-org-id: $ORG" "\(base)/$ID"
              curl -s -i -X DELETE \(auth) -H "x-gw-ims-org-id: $ORG" "\(base)/$ID"   # 204 on Azure, 501 on AWS
            Every create and removal is recorded before it is forwarded; see who asked for what:
              tail -n 4 '\(auditFile)'
              curl -s '\(root)/v1/audit?datasetId=5c802d3cd83fc114b741c4b5'
              curl -s \(root)/metrics | grep '^profile_jobs_gateway_http_requests_total'
            A batch delete on the record dataset \(SimulatorOptions.documentedRecordDataset) is refused by the platform.
            A bearer token starting with 'user-' is a user token: on AWS the sandbox id is then unavailable.
            Make a simulated platform struggle (status, slow, malformed-json, empty-body, html-page; see the README):
              curl -s -X POST -d '{"fault": "status", "status": 503, "times": 3}' http://\(host):\(azurePort)\(FaultSwitch.controlPath)
              curl -s -X DELETE http://\(host):\(azurePort)\(FaultSwitch.controlPath)
            """
    }
}
