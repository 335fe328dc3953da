"""The embedded local cloud: AWS behaviour that moto does not emulate, built to the AWS documentation."""
