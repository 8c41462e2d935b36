"""flowbb.model"""
